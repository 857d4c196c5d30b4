"""Training: label smoothing, learning-rate schedules, mixed precision, and a small Trainer
with atomic checkpoints and exact resume (chapter 10; used by both capstones).

The Trainer keeps the loop visible: for each batch, compute the loss, backpropagate, clip the
gradient norm, step the optimizer and the schedule. What it adds is bookkeeping a long run
needs: progress bars, a JSON history, and checkpoints that can be resumed bit for bit.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.optim.lr_scheduler import LambdaLR
from tqdm.auto import tqdm

__all__ = [
    "LabelSmoothingLoss",
    "inverse_sqrt_schedule",
    "warmup_cosine_schedule",
    "make_scheduler",
    "autocast_dtype",
    "autocast",
    "save_atomic",
    "TrainState",
    "Trainer",
]


class LabelSmoothingLoss(nn.Module):
    """Cross-entropy against a smoothed target, averaged over non-padding positions.

    The target distribution puts ``1 - smoothing`` on the correct token and spreads
    ``smoothing`` uniformly over the whole vocabulary (as ``F.cross_entropy(...,
    label_smoothing=...)`` does), which keeps the model from becoming over-confident:

        loss = (1 - eps) * (-log p[target]) + eps * mean_v(-log p[v])
    """

    def __init__(self, smoothing: float = 0.1, ignore_index: int = 0):
        super().__init__()
        if not 0.0 <= smoothing < 1.0:
            raise ValueError(f"smoothing must be in [0, 1), got {smoothing}")
        self.smoothing = smoothing
        self.ignore_index = ignore_index

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        """``logits``: ``(..., vocab)``; ``target``: ``(...)`` ids. Returns a scalar."""
        if logits.shape[:-1] != target.shape:
            raise ValueError(
                f"logits {tuple(logits.shape)} must be target's shape {tuple(target.shape)} "
                "plus a vocabulary dimension"
            )
        log_probs = F.log_softmax(logits.float(), dim=-1)  # (..., vocab)
        keep = target != self.ignore_index  # (...)
        safe_target = target.masked_fill(~keep, 0)
        nll = -log_probs.gather(-1, safe_target.unsqueeze(-1)).squeeze(-1)  # (...)
        uniform = -log_probs.mean(dim=-1)  # (...)
        loss = (1.0 - self.smoothing) * nll + self.smoothing * uniform
        count = keep.sum()
        if count == 0:
            raise ValueError("every target position is padding: nothing to learn from")
        return (loss * keep).sum() / count


# --- learning-rate schedules (multipliers of the optimizer's base learning rate) -----------------


def inverse_sqrt_schedule(d_model: int, warmup_steps: int) -> Callable[[int], float]:
    """The schedule of "Attention Is All You Need":
    ``d_model^-0.5 * min(step^-0.5, step * warmup^-1.5)``: linear warm-up, then 1/sqrt(step).

    Use with a base learning rate of 1.0 (or a multiplier, "factor", to scale it).
    """
    if warmup_steps < 1:
        raise ValueError(f"warmup_steps must be >= 1, got {warmup_steps}")

    def multiplier(step: int) -> float:
        step = max(step, 1)  # LambdaLR calls it with step 0 first
        return d_model**-0.5 * min(step**-0.5, step * warmup_steps**-1.5)

    return multiplier


def warmup_cosine_schedule(
    warmup_steps: int, total_steps: int, min_ratio: float = 0.0
) -> Callable[[int], float]:
    """Linear warm-up to 1, then a cosine decay to ``min_ratio`` at ``total_steps``."""
    if not 0 <= warmup_steps < total_steps:
        raise ValueError(
            f"need 0 <= warmup_steps < total_steps, got {warmup_steps} and {total_steps}"
        )

    def multiplier(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return multiplier


def make_scheduler(
    optimizer: torch.optim.Optimizer, multiplier: Callable[[int], float]
) -> LambdaLR:
    """Wrap a multiplier function as a scheduler stepped once per optimizer step."""
    return LambdaLR(optimizer, multiplier)


# --- mixed precision ----------------------------------------------------------------------------


def autocast_dtype(device: torch.device) -> torch.dtype | None:
    """bfloat16 on GPUs that support it, float16 on other CUDA GPUs, None (full precision)
    elsewhere: on CPUs without bfloat16 matrix units autocast only slows training down."""
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return None


def autocast(device: torch.device, enabled: bool = True):
    """A context manager running the forward pass in reduced precision where it pays off, and
    doing nothing where it does not (CPU, MPS, or ``enabled=False``)."""
    dtype = autocast_dtype(device) if enabled else None
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


# --- checkpoints --------------------------------------------------------------------------------


def save_atomic(obj: Any, path: str | Path) -> None:
    """``torch.save`` to a temporary file in the same folder, then rename it over ``path``.

    The rename is atomic, so ``path`` always holds either the previous checkpoint or the new
    one, never a half-written file, even if the process is killed mid-write.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _write_json_atomic(data: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, path)


def _rng_states() -> dict:
    states = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def _set_rng_states(states: dict) -> None:
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


# --- the trainer --------------------------------------------------------------------------------


@dataclass
class TrainState:
    """Where training stands: resuming continues from exactly here."""

    step: int = 0  # optimizer steps taken
    epoch: int = 0  # the epoch in progress (0-based)
    batch_in_epoch: int = 0  # batches of that epoch already consumed
    epoch_loss_sum: float = 0.0  # token-weighted loss of those batches
    epoch_tokens: int = 0
    epoch_seconds: float = 0.0
    history: list[dict] = field(default_factory=list)  # one entry per finished epoch


LossFunction = Callable[[nn.Module, Any], tuple[Tensor, int]]


class Trainer:
    """A training loop with gradient clipping, a schedule, mixed precision and checkpoints.

    Args:
        model: the module to train.
        optimizer: e.g. ``torch.optim.Adam(model.parameters(), betas=(0.9, 0.98), eps=1e-9)``.
        compute_loss: ``compute_loss(model, batch) -> (mean loss, number of target tokens)``;
            it moves the batch to the device itself.
        scheduler: stepped after every optimizer step (optional).
        grad_clip: maximum global gradient norm (None: no clipping).
        device: where the model lives; batches are the loss function's business.
        mixed_precision: autocast where supported (see :func:`autocast`).
        checkpoint_path: where :meth:`fit` saves the latest checkpoint (atomically).
        checkpoint_every: also checkpoint every this many steps (0: only at epoch ends).
        history_path: a JSON file rewritten after every epoch with the history.
        progress: show tqdm progress bars.
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        compute_loss: LossFunction,
        scheduler: LambdaLR | None = None,
        grad_clip: float | None = 1.0,
        device: torch.device | str = "cpu",
        mixed_precision: bool = False,
        checkpoint_path: str | Path | None = None,
        checkpoint_every: int = 0,
        history_path: str | Path | None = None,
        progress: bool = True,
    ):
        self.model = model
        self.optimizer = optimizer
        self.compute_loss = compute_loss
        self.scheduler = scheduler
        self.grad_clip = grad_clip
        self.device = torch.device(device)
        self.mixed_precision = mixed_precision
        use_scaler = mixed_precision and autocast_dtype(self.device) == torch.float16
        self.scaler = torch.amp.GradScaler("cuda") if use_scaler else None
        self.checkpoint_path = Path(checkpoint_path) if checkpoint_path else None
        self.checkpoint_every = checkpoint_every
        self.history_path = Path(history_path) if history_path else None
        self.progress = progress
        self.state = TrainState()
        self.extra_state: dict = {}  # saved with checkpoints (e.g. the model configuration)

    # one optimizer step --------------------------------------------------------------------

    def train_step(self, batch: Any) -> tuple[float, int]:
        """Forward, backward, clip, step. Returns (loss, target tokens) of the batch."""
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        with autocast(self.device, self.mixed_precision):
            loss, tokens = self.compute_loss(self.model, batch)
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"loss became {loss.item()} at step {self.state.step}; lower the learning rate "
                "or check the data"
            )
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.optimizer)
        else:
            loss.backward()
        if self.grad_clip is not None:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        if self.scheduler is not None:
            self.scheduler.step()
        self.state.step += 1
        return loss.item(), tokens

    @torch.no_grad()
    def evaluate(self, batches: Iterable) -> float:
        """Token-weighted mean loss over ``batches``, in evaluation mode."""
        self.model.eval()
        total, count = 0.0, 0
        for batch in batches:
            with autocast(self.device, self.mixed_precision):
                loss, tokens = self.compute_loss(self.model, batch)
            total += loss.item() * tokens
            count += tokens
        if count == 0:
            raise ValueError("evaluate() received no batches")
        return total / count

    # the loop --------------------------------------------------------------------------------

    def fit(
        self,
        make_batches: Callable[[int], Iterable],
        epochs: int,
        validate: Callable[[Trainer], dict] | None = None,
        max_steps: int | None = None,
        max_seconds: float | None = None,
    ) -> list[dict]:
        """Train until ``epochs`` epochs (or ``max_steps`` steps, or ``max_seconds``) are done.

        ``make_batches(epoch)`` returns that epoch's batches in a fixed order (so a resumed
        run can skip the ones already seen). ``validate(trainer)`` returns metrics such as
        ``{"val_loss": ..., "bleu": ...}`` stored in the history after each epoch. After a
        :meth:`load_checkpoint`, ``fit`` continues exactly where the checkpoint was taken.
        """
        start_time = time.perf_counter()
        stopped = False
        while self.state.epoch < epochs and not stopped:
            epoch = self.state.epoch
            batches = list(make_batches(epoch))
            skip = self.state.batch_in_epoch
            bar = tqdm(
                total=len(batches), initial=skip, desc=f"epoch {epoch + 1}/{epochs}",
                disable=not self.progress, leave=False,
            )
            resumed_at = time.perf_counter() - self.state.epoch_seconds
            for batch in batches[skip:]:
                loss, tokens = self.train_step(batch)
                self.state.epoch_loss_sum += loss * tokens
                self.state.epoch_tokens += tokens
                self.state.batch_in_epoch += 1
                self.state.epoch_seconds = time.perf_counter() - resumed_at
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.3f}", lr=f"{self.current_lr():.2e}")
                if self.checkpoint_every and self.state.step % self.checkpoint_every == 0:
                    self.save_checkpoint()
                out_of_steps = max_steps is not None and self.state.step >= max_steps
                out_of_time = (
                    max_seconds is not None and time.perf_counter() - start_time >= max_seconds
                )
                if out_of_steps or out_of_time:
                    stopped = True
                    break
            bar.close()
            if self.state.batch_in_epoch < len(batches):
                break  # stopped mid-epoch: the checkpoint records where
            record = {
                "epoch": epoch + 1,
                "step": self.state.step,
                "train_loss": self.state.epoch_loss_sum / max(self.state.epoch_tokens, 1),
                "lr": self.current_lr(),
                "epoch_seconds": self.state.epoch_seconds,
            }
            if validate is not None:
                record.update(validate(self))
            self.state.history.append(record)
            self.state.epoch += 1
            self.state.batch_in_epoch = self.state.epoch_tokens = 0
            self.state.epoch_loss_sum = self.state.epoch_seconds = 0.0
            if self.history_path:
                _write_json_atomic(self.state.history, self.history_path)
            if self.checkpoint_path:
                self.save_checkpoint()
        if self.checkpoint_path:
            self.save_checkpoint()
        return self.state.history

    def current_lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    # checkpoints -----------------------------------------------------------------------------

    def checkpoint(self) -> dict:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler else None,
            "scaler": self.scaler.state_dict() if self.scaler else None,
            "rng": _rng_states(),
            "state": asdict(self.state),
            "extra": self.extra_state,
        }

    def save_checkpoint(self, path: str | Path | None = None) -> Path:
        path = Path(path) if path else self.checkpoint_path
        if path is None:
            raise ValueError("no checkpoint path: pass one or set checkpoint_path")
        save_atomic(self.checkpoint(), path)
        return path

    def load_checkpoint(self, path: str | Path) -> None:
        """Restore model, optimizer, schedule, RNG states and position from ``path``."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no checkpoint at {path}")
        try:
            data = torch.load(path, map_location=self.device, weights_only=False)
        except Exception as error:  # a truncated or foreign file: say so plainly
            raise ValueError(f"{path} is not a readable checkpoint: {error}") from error
        missing = {"model", "optimizer", "rng", "state"} - set(data)
        if missing:
            raise ValueError(f"{path} is not a Trainer checkpoint (missing {sorted(missing)})")
        self.model.load_state_dict(data["model"])
        self.optimizer.load_state_dict(data["optimizer"])
        if self.scheduler is not None and data.get("scheduler") is not None:
            self.scheduler.load_state_dict(data["scheduler"])
        if self.scaler is not None and data.get("scaler") is not None:
            self.scaler.load_state_dict(data["scaler"])
        _set_rng_states(data["rng"])
        self.state = TrainState(**data["state"])
        self.extra_state = data.get("extra", {})
