"""What a controller's whole process tree (the controller and its workers) uses: its peak memory as
the PSS of the tree, and the CPU time it spent.

PSS divides each shared page among the address spaces that map it, so a tree's sum counts shared pages
once, unlike a sum of RSS. A child still sharing its parent's address space (vfork, or clone with
CLONE_VM, between the fork and the exec of a subprocess: Go's os/exec and Python's subprocess do so)
reports that same address space again; it is counted once.
"""

from __future__ import annotations

import ctypes
import os
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path

KCMP_SYSCALL = {"x86_64": 312, "aarch64": 272}.get(os.uname().machine)
KCMP_VM = 1
LIBC = ctypes.CDLL(None, use_errno=True)


def same_address_space(pid: int, other: int) -> bool:
    """kcmp(2): whether two processes share one address space (False when it cannot tell)."""
    if KCMP_SYSCALL is None:
        return False
    return int(LIBC.syscall(KCMP_SYSCALL, pid, other, KCMP_VM, 0, 0)) == 0


def tree_pss_kib(pid: int) -> tuple[int, int]:
    """PSS of a process and all its descendants, and how many processes that is (a child sharing
    its parent's address space, about to exec, counted as the parent)."""
    total, count, stack = 0, 0, [(pid, 0)]
    while stack:
        current, parent = stack.pop()
        try:
            if not (parent and same_address_space(parent, current)):
                rollup = Path(f"/proc/{current}/smaps_rollup").read_text()
                match = re.search(r"^Pss:\s+(\d+)", rollup, re.M)
                total += int(match.group(1)) if match else 0
                count += 1
            for task in os.listdir(f"/proc/{current}/task"):
                children = Path(f"/proc/{current}/task/{task}/children").read_text().split()
                stack += [(int(c), current) for c in children]
        except (OSError, ValueError):
            continue  # exited meanwhile
    return total, count


def tree_cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of a process and its live descendants, and of the children they reaped
    (cutime, cstime): a worker that exited still counts once its parent in the tree waited for it."""
    ticks, stack = 0, [pid]
    while stack:
        current = stack.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rpartition(")")[2].split()
            ticks += sum(int(f) for f in fields[11:15])  # utime stime cutime cstime
            for task in os.listdir(f"/proc/{current}/task"):
                stack += [int(c) for c in Path(f"/proc/{current}/task/{task}/children").read_text().split()]
        except (OSError, ValueError):
            continue  # exited meanwhile
    return ticks / os.sysconf("SC_CLK_TCK")


@dataclass
class TreeSampler:
    """Peak PSS per named process tree, sampled in a thread while a scenario runs, and the CPU time
    each tree spent meanwhile."""

    pids: dict[str, int]
    interval: float = 0.5
    peak_kib: dict[str, int] = field(default_factory=dict)
    peak_processes: dict[str, int] = field(default_factory=dict)
    cpu_seconds: dict[str, float] = field(default_factory=dict)
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
        self.cpu_seconds = {name: -tree_cpu_seconds(pid) for name, pid in self.pids.items()}
        self.sample()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.sample()
        for name, pid in self.pids.items():
            self.cpu_seconds[name] += tree_cpu_seconds(pid)
