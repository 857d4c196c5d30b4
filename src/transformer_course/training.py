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
import pickle
import random
import re
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
    "CheckpointError",
    "load_checkpoint_file",
    "load_model_state",
    "describe_checkpoint",
    "remove_stale_temporaries",
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


class CheckpointError(ValueError):
    """A file is not the checkpoint it was meant to be; the message (one line) says why."""


# save_atomic's temporary files: "<name>.<8 characters of tempfile's alphabet>.tmp".
_TEMPORARY_SUFFIX = r"\.[a-z0-9_]{8}\.tmp"
# A temporary file untouched for this long was left by a process killed mid-save: the one
# being written right now has a modification time of a moment ago.
STALE_TEMPORARY_SECONDS = 600.0


def remove_stale_temporaries(path: str | Path) -> list[Path]:
    """Delete the temporary files that killed :func:`save_atomic` calls left next to ``path``.

    Only names of save_atomic's exact pattern for this checkpoint name, and only files older
    than :data:`STALE_TEMPORARY_SECONDS` (another process may be writing one right now), are
    removed. Returns what was removed; a folder that cannot be changed is left as it is.
    """
    path = Path(path)
    pattern = re.compile(re.escape(path.name) + _TEMPORARY_SUFFIX)
    removed = []
    try:
        candidates = [p for p in path.parent.iterdir() if pattern.fullmatch(p.name)]
    except OSError:  # no folder, or one we may not read: nothing to clean
        return removed
    now = time.time()
    for candidate in candidates:
        try:
            if candidate.is_file() and now - candidate.stat().st_mtime > STALE_TEMPORARY_SECONDS:
                candidate.unlink()
                removed.append(candidate)
        except OSError:  # a read-only folder, or gone meanwhile: loading must not fail
            continue
    return removed


def save_atomic(obj: Any, path: str | Path) -> None:
    """``torch.save`` to a temporary file in the same folder, then rename it over ``path``.

    The rename is atomic, so ``path`` always holds either the previous checkpoint or the new
    one, never a half-written file, even if the process is killed mid-write. A failed save
    removes its temporary file; one left by a killed process is removed by later saves and
    loads (see :func:`remove_stale_temporaries`).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
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


def plain(value: Any, where: str = "value") -> Any:
    """``value`` with NumPy numbers and arrays turned into Python ones and paths into strings,
    so that a checkpoint holding it loads with ``torch.load(..., weights_only=True)``.

    Allowed: tensors, ``None``, bool, int, float, str, bytes, and lists, tuples and dicts of
    them. Anything else is a ``TypeError`` naming where it is (``where``), raised when the
    checkpoint is saved rather than found when it is loaded.
    """
    if value is None or isinstance(value, (Tensor, str, bytes, bool)):
        return value
    if isinstance(value, np.generic):  # np.float64 is a float, but pickles as a NumPy object
        return value.item()
    if isinstance(value, int):
        return int(value)  # an IntEnum, say, would need its class to unpickle
    if isinstance(value, float):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, dict):
        return {plain(k, where): plain(v, f"{where}[{k!r}]") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        items = [plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
        return items if isinstance(value, list) else tuple(items)
    raise TypeError(
        f"{where} is a {type(value).__module__}.{type(value).__qualname__}: checkpoints hold "
        "only tensors, numbers, strings and lists/dicts of them, so that they load with "
        "weights_only=True"
    )


def _first_sentence(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return (text.split(". ")[0].rstrip(".") if text else "") or type(error).__name__


def _why_unreadable(path: Path, error: BaseException) -> str:
    """What a file that torch.load refused is, in a few words."""
    try:
        with open(path, "rb") as f:
            head = f.read(512)
    except OSError:
        head = b""
    if not head:
        return "the file is empty"
    if head.startswith(b"PK\x03\x04"):  # torch.save writes a zip archive
        return f"it is truncated or damaged ({_first_sentence(error)})"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and all(c.isprintable() or c.isspace() for c in text):
        return "it is a text file, not a PyTorch file"
    return f"it is not a PyTorch file, or a damaged one ({_first_sentence(error)})"


def load_checkpoint_file(path: str | Path, what: str = "checkpoint") -> dict:
    """``torch.load(path, map_location="cpu", weights_only=True)``, with one-line errors.

    Only tensors and plain Python values are unpickled: a file whose pickle would call
    anything else (``os.system``, say) is refused without running it. Tensors come back on
    the CPU; ``load_state_dict`` moves them to where the model and optimizer live.

    Raises ``FileNotFoundError`` for a missing file and :class:`CheckpointError` (a
    ``ValueError``) for anything that is not a readable dictionary; ``what`` names the kind
    of checkpoint expected, as in "not a readable {what}".
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no {what} at {path}")
    remove_stale_temporaries(path)
    try:  # a file we may not read is said so; any error of torch.load below is the content's
        with open(path, "rb") as f:
            f.read(1)
    except OSError as error:
        raise CheckpointError(f"cannot read {path}: {error.strerror or error}") from error
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        # torch's weights-only unpickler names the first forbidden function or class it met
        # ("GLOBAL posix.system"; "Unsupported class ..." before PyTorch 2.4); without one,
        # the pickle is merely damaged.
        found = re.search(r"(?:GLOBAL|Unsupported class) ([\w.]+)", str(error))
        if found is None:
            raise CheckpointError(
                f"{path} is not a readable {what}: {_why_unreadable(path, error)}"
            ) from error
        culprit = found.group(1)
        older = ""
        if culprit.startswith("numpy"):  # a Trainer checkpoint saved before this check existed
            older = ("; Trainer checkpoints of earlier versions of the course held NumPy "
                     "arrays: if the file is your own, start that run again")
        raise CheckpointError(
            f"{path} is not a weights-only checkpoint: it contains objects that are not "
            f"allowed ({culprit}), so it was not loaded (unpickling it could run code); "
            f"expected a {what} of tensors and plain values{older}"
        ) from error
    except Exception as error:  # truncated, a text file, ...: torch raises many kinds
        raise CheckpointError(
            f"{path} is not a readable {what}: {_why_unreadable(path, error)}"
        ) from error
    if not isinstance(data, dict):
        raise CheckpointError(
            f"{path} is not a readable {what}: it holds a {type(data).__name__}, not a dict"
        )
    return data


def describe_checkpoint(data: dict) -> str | None:
    """What kind of the course's checkpoints ``data`` looks like (for error messages)."""
    keys = set(data)
    if data.get("format") == "transformer_course.tinytalks":
        return "a TinyTalks model (written by `transformer-course tinytalks qa` or `dialogue`)"
    if {"model", "optimizer", "rng", "state"} <= keys:
        return "a Trainer checkpoint (the latest.pt of a training run)"
    if {"config", "model", "tokenizer"} <= keys:
        return "a translator model (the model.pt of `transformer-course translator train`)"
    if keys and all(isinstance(v, Tensor) for v in data.values()):
        return "a bare state dict of weights (such as an epoch_N.pt)"
    return None


def load_model_state(model: nn.Module, state: Any, path: str | Path) -> None:
    """``model.load_state_dict(state)``, refusing with a one-line :class:`CheckpointError`
    that names the first parameter that is missing, extra, or of another shape (a checkpoint
    of another model or configuration) before anything is changed."""
    expected = model.state_dict()
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: its 'model' entry is not a dictionary of tensors")
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"no {missing[0]!r}" + (f" (and {len(missing) - 1} more)"
                                                 if len(missing) > 1 else ""))
        if unexpected:
            parts.append(f"an unexpected {unexpected[0]!r}" + (
                f" (and {len(unexpected) - 1} more)" if len(unexpected) > 1 else ""))
        raise CheckpointError(
            f"{path} does not fit this model (a checkpoint of another model?): it has "
            + " and ".join(parts)
        )
    for key, value in state.items():
        if value.shape != expected[key].shape:
            raise CheckpointError(
                f"{path} does not fit this model (another configuration?): parameter {key!r} "
                f"is {tuple(value.shape)} in the checkpoint but {tuple(expected[key].shape)} "
                "in the model"
            )
    model.load_state_dict(state)


def _write_json_atomic(data: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(json.dumps(data, indent=2))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _rng_states() -> dict:
    """Every random number generator's state, as tensors and plain Python values only (a
    checkpoint must load with ``weights_only=True``, which refuses NumPy arrays)."""
    version, internal, gauss_next = random.getstate()
    name, keys, position, has_gauss, cached_gaussian = np.random.get_state()
    states = {
        "python": [version, list(internal), gauss_next],
        "numpy": [str(name), keys.tolist(), int(position), int(has_gauss),
                  float(cached_gaussian)],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()  # one CPU byte tensor per GPU
    if _mps_available():
        states["mps"] = torch.mps.get_rng_state()
    return states


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps and mps.is_available() and hasattr(torch, "mps"))


def _set_rng_states(states: dict) -> None:
    version, internal, gauss_next = states["python"]
    random.setstate((version, tuple(internal), gauss_next))
    name, keys, position, has_gauss, cached_gaussian = states["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), position, has_gauss,
                         cached_gaussian))
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    if "mps" in states and _mps_available():
        torch.mps.set_rng_state(states["mps"])


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
