"""Shared benchmark helpers: machine description, peak-RSS sampling and table printing."""

from __future__ import annotations

import os
import platform
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass

import psutil


def machine_line() -> str:
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as handle:
            cpu = next(line.split(":", 1)[1].strip() for line in handle if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    mem = psutil.virtual_memory().total / 2**30
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return f"{os.cpu_count()} cores ({cpu}), {mem:.0f} GiB RAM, Python {platform.python_version()}, load avg at start {load}"


def cpu_seconds_by_process(root: psutil.Process, children: bool = True) -> dict[int, float]:
    """User + system CPU seconds of ``root`` and (by default) its descendants, by pid. By pid so a
    phase's share can count a process that started during it; one that exits meanwhile is skipped."""
    seconds = {}
    for process in [root, *(root.children(recursive=True) if children else [])]:
        try:
            times = process.cpu_times()
        except psutil.Error:
            continue
        seconds[process.pid] = times.user + times.system
    return seconds


@dataclass
class Stage:
    seconds: float = 0.0
    peak_rss_mib: float = 0.0


@contextmanager
def measured(include_children: bool = False):
    """Time a block and sample this process's (and optionally children's) peak RSS every 50 ms."""
    stage = Stage()
    process = psutil.Process()
    stop = threading.Event()

    def rss() -> float:
        total = process.memory_info().rss
        if include_children:
            for child in process.children(recursive=True):
                try:
                    total += child.memory_info().rss
                except psutil.NoSuchProcess:
                    pass
        return total / 2**20

    def sample() -> None:
        while not stop.is_set():
            stage.peak_rss_mib = max(stage.peak_rss_mib, rss())
            time.sleep(0.05)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    started = time.perf_counter()
    try:
        yield stage
    finally:
        stage.seconds = time.perf_counter() - started
        stop.set()
        thread.join()
        stage.peak_rss_mib = max(stage.peak_rss_mib, rss())


def print_table(title: str, header: list[str], rows: list[list[object]]) -> None:
    cells = [header] + [[f"{c:,.1f}" if isinstance(c, float) else f"{c:,}" if isinstance(c, int) else str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    print(f"\n{title}")
    print("| " + " | ".join(h.ljust(w) for h, w in zip(cells[0], widths)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in cells[1:]:
        print("| " + " | ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))) + " |")
