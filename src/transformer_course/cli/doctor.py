"""``transformer-course doctor``: what is installed, which device will be used, and a smoke test.

The setup page of the book asks learners to run it; its output is also what to paste into a
bug report.
"""

from __future__ import annotations

import os
import platform
import sys
import time
from importlib import metadata

import torch
import torch.nn.functional as F

from ..models.transformer import Transformer, TransformerConfig
from ..utils.device import DEVICE_ENV, get_device, set_seed

REQUIRED = ["torch", "numpy", "matplotlib", "tqdm", "sacrebleu", "ipywidgets"]
OPTIONAL = {
    "jupyter-book": "building the book",
    "nbgrader": "graded assignments",
    "ipykernel": "running notebooks",
}


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def smoke_test(device: torch.device) -> float:
    """One forward and backward pass of a small Transformer; returns the milliseconds taken."""
    set_seed(0)
    config = TransformerConfig(
        src_vocab_size=50, tgt_vocab_size=50, d_model=32, num_heads=4, num_encoder_layers=2,
        num_decoder_layers=2, d_ff=64, dropout=0.0,
    )
    model = Transformer(config).to(device)
    src = torch.randint(1, 50, (4, 10), device=device)
    tgt = torch.randint(1, 50, (4, 9), device=device)
    start = time.perf_counter()
    logits = model(src, tgt[:, :-1])
    loss = F.cross_entropy(logits.reshape(-1, 50), tgt[:, 1:].reshape(-1))
    loss.backward()
    if not torch.isfinite(loss):
        raise RuntimeError(f"the smoke test's loss is not finite: {loss.item()}")
    if any(p.grad is None for p in model.parameters()):
        raise RuntimeError("some parameters received no gradient")
    return (time.perf_counter() - start) * 1000


def run(out=print) -> int:
    """Print the report; return 0 when everything the course needs works, 1 otherwise."""
    problems: list[str] = []
    out("Transformers from Scratch: environment check")
    out(f"  python        {platform.python_version()} ({sys.executable})")
    out(f"  platform      {platform.platform()}")
    for name in REQUIRED:
        version = _version(name)
        out(f"  {name:<13} {version or 'MISSING'}")
        if version is None:
            problems.append(f"{name} is not installed: pip install {name}")
    for name, purpose in OPTIONAL.items():
        out(f"  {name:<13} {_version(name) or 'not installed'}  (for {purpose})")
    out(f"  course        {_version('transformer-course') or 'not installed (run from source)'}")
    cuda = torch.cuda.is_available()
    mps = torch.backends.mps.is_available()
    out(f"  accelerators  CUDA: {'yes, ' + torch.cuda.get_device_name(0) if cuda else 'no'}; "
        f"MPS: {'yes' if mps else 'no'}")
    try:
        device = get_device()
    except ValueError as error:
        problems.append(str(error))
        device = torch.device("cpu")
    override = os.environ.get(DEVICE_ENV)
    out(f"  device        {device}"
        + (f" (from {DEVICE_ENV})" if override else f" (override with {DEVICE_ENV}=cpu|cuda|mps)"))
    out(f"  cpu threads   {torch.get_num_threads()}")
    data = os.environ.get("TRANSFORMER_COURSE_DATA")
    where = f"{data} (TRANSFORMER_COURSE_DATA)" if data else "downloads on first use"
    out(f"  data folder   {where}")
    try:
        ms = smoke_test(device)
        out(f"  smoke test    forward + backward of a small Transformer on {device}: "
            f"ok ({ms:.0f} ms)")
    except Exception as error:  # report, don't crash: the user needs the rest of the report
        problems.append(f"smoke test failed: {type(error).__name__}: {error}")
        out("  smoke test    FAILED")
    if problems:
        out("Problems:")
        for problem in problems:
            out(f"  - {problem}")
        return 1
    out("All checks passed: you are ready for chapter 1.")
    return 0
