"""`make bench`: figures measured here, each beside what it is compared with.

A row is a dict with `benchmark`, `value` (Tide, this run), `same_run` (a comparison measured in the
same run on this machine), `published` (a peer's published figure: other hardware, other workload,
never turned into a ratio) and `note`. A benchmark that fails or measures nothing raises
`BenchmarkFailed` (or returns `failed_row`), and `make bench` exits non-zero.
"""

from __future__ import annotations


class BenchmarkFailed(RuntimeError):
    """A benchmark that ran but has no figure to show (did not converge, counted nothing, tool missing)."""


def failed_row(benchmark: str, why: str) -> dict[str, str]:
    return {"benchmark": benchmark, "value": "FAILED", "note": why, "failed": "yes"}
