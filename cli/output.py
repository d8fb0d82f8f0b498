"""Output for people: tables on stdout, progress and messages on stderr, colour only on a terminal."""

from __future__ import annotations

import itertools
import os
import sys
import time
from collections.abc import Sequence
from typing import TextIO

_COLOURS = {"red": "31", "green": "32", "yellow": "33", "blue": "34", "bold": "1", "dim": "2"}


def wants_colour(stream: TextIO) -> bool:
    if os.environ.get("NO_COLOR"):
        return False
    if os.environ.get("FORCE_COLOR"):
        return True
    return hasattr(stream, "isatty") and stream.isatty()


def paint(text: str, colour: str, enabled: bool) -> str:
    if not enabled or colour not in _COLOURS:
        return text
    return f"\033[{_COLOURS[colour]}m{text}\033[0m"


def status_colour(value: str) -> str:
    return {"True": "green", "False": "red", "Unknown": "yellow"}.get(value, "")


def render_table(headers: Sequence[str], rows: Sequence[Sequence[str]], colour: bool = False) -> str:
    """Columns padded to their widest cell (like Flux's and kubectl's tables), READY values coloured."""
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    ready_col = headers.index("READY") if "READY" in headers else -1
    lines = []
    for idx, row in enumerate([list(headers), *[list(r) for r in rows]]):
        cells = []
        for i, cell in enumerate(row):
            last = i == len(row) - 1
            padded = cell if last else cell.ljust(widths[i])
            if idx > 0 and i == ready_col:
                padded = paint(padded, status_colour(cell), colour)
            cells.append(padded)
        lines.append("   ".join(cells).rstrip())
    return "\n".join(lines)


class Printer:
    """Flux-style progress lines: ► action, ✔ success, ✗ failure, ◎ waiting (a spinner on a terminal)."""

    def __init__(self, stream: TextIO | None = None, quiet: bool = False) -> None:
        self.stream = stream or sys.stderr
        self.colour = wants_colour(self.stream)
        self.quiet = quiet
        self._spinner = itertools.cycle("⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏")
        self._waiting: str | None = None
        self._wait_started = 0.0

    def _line(self, symbol: str, colour: str, message: str) -> None:
        if self.quiet:
            return
        self._clear_wait()
        self.stream.write(f"{paint(symbol, colour, self.colour)} {message}\n")
        self.stream.flush()

    def action(self, message: str) -> None:
        self._line("►", "blue", message)

    def success(self, message: str) -> None:
        self._line("✔", "green", message)

    def failure(self, message: str) -> None:
        self._clear_wait()
        self.stream.write(f"{paint('✗', 'red', self.colour)} {message}\n")
        self.stream.flush()

    def hint(self, message: str) -> None:
        self._clear_wait()
        self.stream.write(f"  {paint('→', 'yellow', self.colour)} {message}\n")
        self.stream.flush()

    def warning(self, message: str) -> None:
        self._line("⚠", "yellow", message)

    def waiting(self, message: str) -> None:
        """Start (or update) a wait: one line with a spinner and elapsed time on a terminal."""
        if self.quiet:
            return
        if self._waiting is None:
            self._wait_started = time.monotonic()
            if not self.colour:
                self.stream.write(f"◎ {message}\n")
                self.stream.flush()
        self._waiting = message
        self.tick()

    def tick(self, detail: str = "") -> None:
        if self.quiet or self._waiting is None or not self.colour:
            return
        elapsed = time.monotonic() - self._wait_started
        extra = f" {paint(detail, 'dim', True)}" if detail else ""
        self.stream.write(f"\r\033[K{next(self._spinner)} {self._waiting} ({elapsed:.0f}s){extra}")
        self.stream.flush()

    def stop_waiting(self) -> None:
        self._clear_wait()

    def _clear_wait(self) -> None:
        if self._waiting is not None and self.colour:
            self.stream.write("\r\033[K")
        self._waiting = None
