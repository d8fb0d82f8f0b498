"""Peak memory of a controller: the PSS of its whole process tree (the controller and its workers).

PSS divides each shared page among the processes that map it, so a tree's sum counts shared pages
once, unlike a sum of RSS.
"""

from __future__ import annotations

import os
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path


def tree_pss_kib(pid: int) -> tuple[int, int]:
    """PSS of a process and all its descendants, and how many processes that is."""
    total, count, stack = 0, 0, [pid]
    while stack:
        current = stack.pop()
        try:
            rollup = Path(f"/proc/{current}/smaps_rollup").read_text()
            match = re.search(r"^Pss:\s+(\d+)", rollup, re.M)
            total += int(match.group(1)) if match else 0
            count += 1
            for task in os.listdir(f"/proc/{current}/task"):
                stack += [int(c) for c in Path(f"/proc/{current}/task/{task}/children").read_text().split()]
        except (OSError, ValueError):
            continue  # exited meanwhile
    return total, count


@dataclass
class TreeSampler:
    """Peak PSS per named process tree, sampled in a thread while a scenario runs."""

    pids: dict[str, int]
    interval: float = 0.5
    peak_kib: dict[str, int] = field(default_factory=dict)
    peak_processes: dict[str, int] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def sample(self) -> None:
        for name, pid in self.pids.items():
            kib, count = tree_pss_kib(pid)
            self.peak_kib[name] = max(self.peak_kib.get(name, 0), kib)
            self.peak_processes[name] = max(self.peak_processes.get(name, 0), count)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def __enter__(self) -> TreeSampler:
        self.sample()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.sample()
