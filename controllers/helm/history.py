"""status.history as Flux keeps it: snapshots newest first, cut after the last good release."""

from __future__ import annotations

from collections.abc import Sequence

from tide.shared.api.helm import DEFAULT_MAX_HISTORY, ReleaseSnapshot

_GOOD = ("deployed", "superseded")


def newest_first(history: Sequence[ReleaseSnapshot] | None) -> list[ReleaseSnapshot]:
    return sorted(history or [], key=lambda s: s.version, reverse=True)


def latest(history: Sequence[ReleaseSnapshot] | None) -> ReleaseSnapshot | None:
    ordered = newest_first(history)
    return ordered[0] if ordered else None


def has_test_in_phase(snapshot: ReleaseSnapshot | None, phase: str) -> bool:
    hooks = (snapshot.test_hooks or {}) if snapshot else {}
    return any(h is not None and h.phase == phase for h in hooks.values())


def has_been_tested(snapshot: ReleaseSnapshot | None) -> bool:
    """Tests ran: no test hooks at all, a failure, or every hook succeeded (Flux's HasBeenTested)."""
    if snapshot is None or snapshot.test_hooks is None:
        return False
    hooks = snapshot.test_hooks
    if not hooks or has_test_in_phase(snapshot, "Failed"):
        return True
    return all(h is not None and h.phase == "Succeeded" for h in hooks.values())


def _is_good(snapshot: ReleaseSnapshot, ignore_tests: bool) -> bool:
    return snapshot.status in _GOOD and (ignore_tests or not has_test_in_phase(snapshot, "Failed"))


def previous(history: Sequence[ReleaseSnapshot] | None, ignore_tests: bool) -> ReleaseSnapshot | None:
    """The release a rollback returns to: the newest good one before the latest."""
    return next((s for s in newest_first(history)[1:] if _is_good(s, ignore_tests)), None)


def truncate(history: Sequence[ReleaseSnapshot] | None, ignore_tests: bool) -> list[ReleaseSnapshot]:
    """Keep up to the previous good release; without one, the newest five."""
    ordered = newest_first(history)
    for index, snap in enumerate(ordered[1:], start=1):
        if _is_good(snap, ignore_tests):
            return ordered[: index + 1]
    return ordered[:DEFAULT_MAX_HISTORY]


def truncate_ignoring_previous(history: Sequence[ReleaseSnapshot] | None) -> list[ReleaseSnapshot]:
    return newest_first(history)[:DEFAULT_MAX_HISTORY]
