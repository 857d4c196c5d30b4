"""Training: label smoothing, learning-rate schedules, mixed precision, and a small Trainer
with atomic checkpoints and exact resume (chapter 10; used by both capstones).

The Trainer keeps the loop visible: for each batch, compute the loss, backpropagate, clip the
gradient norm, step the optimizer and the schedule. What it adds is bookkeeping a long run
needs: progress bars, a JSON history, and checkpoints that can be resumed bit for bit.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.optim.lr_scheduler import LambdaLR
from tqdm.auto import tqdm

from .checkpoint import (
    CheckpointError,
    _first_sentence,
    _rng_states,
    _set_rng_states,
    _write_json_atomic,
    describe_checkpoint,
    load_checkpoint_file,
    load_model_state,
    plain,
    save_atomic,
)
from .optimizer import optimizer_step

__all__ = ["autocast_dtype", "autocast", "TrainState", "Trainer"]


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
        optimizer: e.g. ``torch.optim.Adam(model.parameters(), betas=(0.9, 0.98), eps=1e-9)``
            or :func:`~transformer_course.training.optimizer.make_optimizer`.
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
        # Free the last step's gradients before the forward pass rather than after it: a lower
        # peak of memory on a GPU (optimizer_step's own zero_grad is then a no-op).
        self.optimizer.zero_grad(set_to_none=True)
        with autocast(self.device, self.mixed_precision):
            loss, tokens = self.compute_loss(self.model, batch)
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"loss became {loss.item()} at step {self.state.step}; lower the learning rate "
                "or check the data"
            )
        # zero_grad, backward (scaled for float16), clip, optimizer step, schedule step.
        optimizer_step(self.model, loss, self.optimizer, self.scheduler, self.grad_clip,
                       self.scaler)
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
        """Everything :meth:`load_checkpoint` needs, as tensors and plain Python values (so
        the file loads with ``weights_only=True``; see :func:`plain`)."""
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": plain(self.scheduler.state_dict(), "the scheduler's state")
            if self.scheduler else None,
            "scaler": self.scaler.state_dict() if self.scaler else None,
            "rng": _rng_states(),
            "state": plain(asdict(self.state), "the training state"),
            "extra": plain(self.extra_state, "extra_state"),
        }

    def save_checkpoint(self, path: str | Path | None = None) -> Path:
        path = Path(path) if path else self.checkpoint_path
        if path is None:
            raise ValueError("no checkpoint path: pass one or set checkpoint_path")
        save_atomic(self.checkpoint(), path)
        return path

    def load_checkpoint(self, path: str | Path) -> None:
        """Restore model, optimizer, schedule, RNG states and position from ``path``.

        The file is loaded with ``weights_only=True`` (a checkpoint whose pickle would run
        code is refused); a file that is not a Trainer checkpoint, or one of another model or
        configuration, is a :class:`CheckpointError` naming the file and what differs, raised
        before anything is changed.
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no checkpoint at {path}")
        data = load_checkpoint_file(path, "Trainer checkpoint")
        missing = {"model", "optimizer", "rng", "state"} - set(data)
        if missing:
            kind = describe_checkpoint(data)
            raise CheckpointError(
                f"{path} is not a Trainer checkpoint: "
                + (f"it is {kind}" if kind else f"it has no {sorted(missing)} entries")
                + "; resume from the latest.pt that Trainer.save_checkpoint wrote"
            )
        try:
            state = TrainState(**data["state"])
        except TypeError as error:
            raise CheckpointError(f"{path} has a damaged training state: {error}") from error
        load_model_state(self.model, data["model"], path)
        try:
            # The optimizer moves its state to each parameter's device and dtype itself.
            self.optimizer.load_state_dict(data["optimizer"])
            if self.scheduler is not None and data.get("scheduler") is not None:
                self.scheduler.load_state_dict(data["scheduler"])
            if self.scaler is not None and data.get("scaler") is not None:
                self.scaler.load_state_dict(data["scaler"])
        except (KeyError, TypeError, ValueError, RuntimeError) as error:
            raise CheckpointError(
                f"{path} does not fit this trainer (another optimizer or schedule?): "
                f"{_first_sentence(error)}"
            ) from error
        try:
            _set_rng_states(data["rng"])
        except (KeyError, TypeError, ValueError, RuntimeError) as error:
            raise CheckpointError(
                f"{path} has damaged random generator states: {_first_sentence(error)}"
            ) from error
        self.state = state
        self.extra_state = data.get("extra", {})
