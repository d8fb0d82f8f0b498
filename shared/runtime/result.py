"""What a reconcile returns or raises."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Result:
    """Success. requeue_after None: next reconcile after spec.interval (with jitter)."""

    requeue_after: float | None = None


class ReconcileError(Exception):
    """A failure that is retried: Ready=False with reason/message, a Warning event, and a requeue after
    requeue_after, else spec.retryInterval where the kind has one, else exponential backoff."""

    def __init__(self, reason: str, message: str, requeue_after: float | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.requeue_after = requeue_after


class StalledError(Exception):
    """A failure retrying cannot fix: Stalled=True, Ready=False, no retry until the object changes."""

    def __init__(self, reason: str, message: str, event_message: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.event_message = event_message or message
        """The Warning Event's message (Flux's terminal errors put a prefix on the condition only)."""
