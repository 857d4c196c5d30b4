"""Timing helpers shared by the benchmark scripts.

Ratios are measured side by side in one process: the competitors run in alternation, many
times, and the median of each is kept, so a machine that speeds up or slows down during the
run affects both alike.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results"


def median_times(functions: dict[str, Callable[[], object]], repeats: int, warmup: int = 2
                 ) -> dict[str, float]:
    """Run every function ``warmup`` times, then ``repeats`` rounds in alternation; return each
    one's median seconds per call."""
    for fn in functions.values():
        for _ in range(warmup):
            fn()
    samples: dict[str, list[float]] = {name: [] for name in functions}
    for _ in range(repeats):
        for name, fn in functions.items():
            start = time.perf_counter()
            fn()
            samples[name].append(time.perf_counter() - start)
    return {name: statistics.median(times) for name, times in samples.items()}


def use_local_data() -> None:
    """In a developer checkout with ../shared/data beside it, read the data sets from there
    (as the tests and CI do) unless TRANSFORMER_COURSE_DATA says otherwise."""
    local = ROOT.parent / "shared" / "data"
    if not os.environ.get("TRANSFORMER_COURSE_DATA") and local.is_dir():
        os.environ["TRANSFORMER_COURSE_DATA"] = str(local)


def machine() -> dict:
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "device": "cuda: " + torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
    }


def write_result(name: str, data: dict, output: str | Path | None = None) -> Path:
    """Write ``data`` with the machine, command and time to ``results/<name>.json``."""
    path = Path(output) if output else RESULTS / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "benchmark": name,
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
        **data,
    }
    path.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    return path
