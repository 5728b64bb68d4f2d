"""The shared benchmark harness.

Each benchmarks/bench_<topic>.py defines

    def run(workdir: str, quick: bool) -> list[dict]

returning one dict per case:

    {"group": "images", "case": "int16 1k x 1k",
     "times": {"torchfits": 0.0003, "fitsio": 0.0007, "astropy": 0.002, "limit": 0.00025},
     "unit": "s/read",                      # what one time measures
     "target": "torchfits <= 0.5 x fitsio", # the issue's target, or None
     "met": True}                           # whether it was met, or None

`measure` runs the contenders side by side in this one process,
interleaved (each repeat runs every contender once, in turn), after a warm
up that also warms the page cache, and keeps the median. benchmarks/run.py
runs every bench module and writes RESULTS.md and the chart.
"""
import os
import platform
import random
import statistics
import time
from typing import Callable, Dict


def measure(contenders: Dict[str, Callable[[], object]], repeat: int = 15, number: int = 1,
            warmup: int = 2) -> Dict[str, float]:
    """Median seconds per call of each contender, interleaved.

    The order is shuffled in every round (with a fixed seed): a contender
    that always ran right after another read of the same file would find
    its pages and a just-freed buffer of the same size hot in cache.
    """
    times = {name: [] for name in contenders}
    for _ in range(warmup):
        for fn in contenders.values():
            fn()
    order = list(contenders.items())
    rng = random.Random(0)
    for _ in range(repeat):
        rng.shuffle(order)
        for name, fn in order:
            t0 = time.perf_counter()
            for _ in range(number):
                fn()
            times[name].append((time.perf_counter() - t0) / number)
    return {name: statistics.median(v) for name, v in times.items()}


def ratio(times: Dict[str, float], a: str = "torchfits", b: str = "fitsio") -> float:
    return times[a] / times[b]


def machine() -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = ""
    try:
        with open("/proc/meminfo") as f:
            kb = int(f.readline().split()[1])
            mem = f", {kb / 2**20:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    import torch
    return (f"{cpu}, {os.cpu_count()} cores{mem}; {platform.system()} {platform.release()}; "
            f"Python {platform.python_version()}, torch {torch.__version__}")
