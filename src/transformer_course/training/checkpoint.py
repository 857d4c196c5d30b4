"""Checkpoints that survive a crash and hostile files: atomic saves, weights-only loads with
one-line errors, random states as plain values (chapter 10)."""

from __future__ import annotations

import json
import os
import pickle
import random
import re
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..models.normalization import upgrade_state_dict

__all__ = ["average_checkpoint_files", "save_atomic", "CheckpointError", "load_checkpoint_file",
           "load_model_state", "describe_checkpoint", "remove_stale_temporaries"]


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
    of another model or configuration) before anything is changed. The names of earlier
    versions of the layers (``attn_residual.norm``, ...) are renamed first."""
    expected = model.state_dict()
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: its 'model' entry is not a dictionary of tensors")
    state = upgrade_state_dict(model, state)
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


def average_checkpoint_files(paths: list[Path]) -> dict:
    """The element-wise mean of the model states saved in ``paths`` (checkpoint averaging,
    chapter 13): floating-point tensors are averaged, the others taken from the first file."""
    states = [load_checkpoint_file(p, "model state") for p in paths]
    averaged = {}
    for key, value in states[0].items():
        if value.is_floating_point():
            averaged[key] = sum(s[key] for s in states) / len(states)
        else:
            averaged[key] = value
    return averaged
