"""What the benchmarks share: the machine they ran on, timing, and Markdown tables."""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent


def machine() -> str:
    """A one-line description of this machine."""
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = ""
    try:
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f", {kib / 2**20:.0f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    gpu = "no GPU"
    if torch.cuda.is_available():
        gpu = f"GPU {torch.cuda.get_device_name()} (CUDA {torch.version.cuda})"
    return (
        f"{cpu}, {os.cpu_count()} cores{memory}, {gpu}; torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), Python {platform.python_version()}"
    )


def median_seconds(function: Callable[[], object], repeats: int = 5, warmup: int = 1) -> float:
    for _ in range(warmup):
        function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def interleaved_seconds(
    functions: list[Callable[[], object]], repeats: int = 5, warmup: int = 1
) -> list[float]:
    """The median time of each of `functions`, timed in turn (`interleaved_rounds`), so
    that a drift of a shared machine's speed falls on all of them alike."""
    return [statistics.median(t) for t in interleaved_rounds(functions, repeats, warmup)]


def paired_ratio(numerator: list[float], denominator: list[float]) -> float:
    """The median over rounds of the ratio of two things timed in the same round: on a
    shared machine whose speed drifts by 10% from one second to the next, a ratio taken
    within each round is steadier than the ratio of the two medians."""
    return statistics.median(a / b for a, b in zip(numerator, denominator, strict=True))


def interleaved_rounds(
    functions: list[Callable[[], object]], repeats: int = 5, warmup: int = 1
) -> list[list[float]]:
    """The seconds of each of `functions` in each round, timed in turn, the order reversed
    every other round (ABBA), so that neither runs always first after the other."""
    for function in functions:
        for _ in range(warmup):
            function()
    times: list[list[float]] = [[] for _ in functions]
    for round_ in range(repeats):
        order = list(range(len(functions)))
        for index in order if round_ % 2 == 0 else order[::-1]:
            start = time.perf_counter()
            functions[index]()
            times[index].append(time.perf_counter() - start)
    return times


def table(header: list[str], rows: list[list[object]]) -> str:
    def cell(value: object) -> str:
        if isinstance(value, float):
            return f"{value:.3g}"
        return str(value)

    for row in rows:
        if len(row) != len(header):
            raise ValueError(f"a row of {len(row)} cells under {len(header)} headings: {row}")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)
