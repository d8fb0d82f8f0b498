"""--concurrent: how many reconciles of a kind may work at once.

A reconcile that only waits, for objects it applied to become healthy, gives its slot back for the
wait and takes one again to report. Flux holds a worker through a health check, so one Kustomization
waiting out a 5-minute timeout keeps a worker from every other; here waiting costs no slot, only the
work does (building, applying, talking to the API server)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from contextvars import ContextVar


class WorkerSlots:
    def __init__(self, count: int, on_change: Callable[[int], None] | None = None) -> None:
        self.count = max(1, count)
        self._free = asyncio.Semaphore(self.count)
        self._on_change = on_change
        self.busy = 0

    async def take(self) -> Slot:
        slot = Slot(self)
        await slot.take()
        return slot

    def _changed(self, delta: int) -> None:
        self.busy += delta
        if self._on_change is not None:
            self._on_change(self.busy)


class Slot:
    """One reconcile's hold on a slot: given back while it waits, and once when it ends."""

    def __init__(self, slots: WorkerSlots) -> None:
        self._slots = slots
        self.held = False

    async def take(self) -> None:
        await self._slots._free.acquire()
        self.held = True
        self._slots._changed(1)

    def give_back(self) -> None:
        if self.held:
            self.held = False
            self._slots._free.release()
            self._slots._changed(-1)

    @contextlib.asynccontextmanager
    async def waiting(self) -> AsyncIterator[None]:
        """The slot is free for others for the block; taken again after it (even when it raised)."""
        self.give_back()
        try:
            yield
        finally:
            await self.take()


current_slot: ContextVar[Slot | None] = ContextVar("current_slot", default=None)
"""The slot of the reconcile running in this task (set by the kind controller)."""


@contextlib.asynccontextmanager
async def waiting() -> AsyncIterator[None]:
    """Around a wait that does no work: the running reconcile's slot is free for the wait."""
    slot = current_slot.get()
    if slot is None:
        yield
        return
    async with slot.waiting():
        yield
