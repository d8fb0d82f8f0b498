"""The work queue between watch events and reconciles (client-go's semantics).

- One entry per key, however many events arrive before a worker takes it.
- A key is never handed to two workers at once: an add while it is being processed marks it dirty
  and it is handed out again once `done()`.
- Delayed adds keep the earliest due time; taking a key drops its pending delayed add (the running
  reconcile decides when the key is next due).
- Per-key exponential backoff for failures (Flux: 750 ms doubling to 15 min), reset by `forget()`.
"""

from __future__ import annotations

import asyncio
import heapq
import random
from collections import deque
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)

MIN_RETRY_DELAY = 0.75
MAX_RETRY_DELAY = 900.0


class ShutDown(Exception):
    """The queue was shut down; workers stop."""


class ExponentialBackoff(Generic[K]):
    """Per-key failure backoff: base * 2^failures, capped."""

    def __init__(self, base: float = MIN_RETRY_DELAY, cap: float = MAX_RETRY_DELAY) -> None:
        self.base = base
        self.cap = cap
        self._failures: dict[K, int] = {}

    def when(self, key: K) -> float:
        failures = self._failures.get(key, 0)
        self._failures[key] = failures + 1
        if failures >= 64:
            return self.cap
        return float(min(self.base * (2**failures), self.cap))

    def failures(self, key: K) -> int:
        return self._failures.get(key, 0)

    def forget(self, key: K) -> None:
        self._failures.pop(key, None)


def jittered(interval: float, percentage: float, rand: Callable[[], float] = random.random) -> float:
    """interval ± a random share of up to percentage% (Flux's jitter.Percent); 0 or >= 100 disable it."""
    if interval <= 0 or percentage <= 0 or percentage >= 100:
        return max(interval, 0.0)
    spread = interval * percentage / 100.0
    return max(0.0, interval - spread + 2 * spread * rand())


class WorkQueue(Generic[K]):
    def __init__(
        self,
        name: str = "",
        backoff: ExponentialBackoff[K] | None = None,
        on_change: Callable[[WorkQueue[K]], None] | None = None,
    ) -> None:
        self.name = name
        self.backoff: ExponentialBackoff[K] = backoff or ExponentialBackoff()
        self._on_change = on_change
        self._queue: deque[K] = deque()
        self._dirty: set[K] = set()
        self._processing: set[K] = set()
        self._waiting: dict[K, float] = {}
        self._heap: list[tuple[float, int, K]] = []
        self._seq = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._timer: asyncio.TimerHandle | None = None
        self._shutting_down = False
        self.adds = 0
        self.retries = 0

    # --- state ------------------------------------------------------------------------------

    def now(self) -> float:
        return asyncio.get_running_loop().time()

    def __len__(self) -> int:
        """Keys ready to be handed out (workqueue_depth)."""
        return len(self._queue)

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    @property
    def processing(self) -> int:
        return len(self._processing)

    def is_processing(self, key: K) -> bool:
        return key in self._processing

    def due_at(self, key: K) -> float | None:
        return self._waiting.get(key)

    def is_queued(self, key: K) -> bool:
        return key in self._dirty

    @property
    def shutting_down(self) -> bool:
        return self._shutting_down

    # --- adding -----------------------------------------------------------------------------

    def add(self, key: K) -> None:
        """Due now. Coalesces with an entry already queued; re-runs after a running reconcile."""
        if self._shutting_down or key in self._dirty:
            return
        self.adds += 1
        self._dirty.add(key)
        self._waiting.pop(key, None)
        if key not in self._processing:
            self._queue.append(key)
            self._notify()
        self._changed()

    def add_after(self, key: K, delay: float) -> None:
        """Due after delay seconds; an earlier due time for the key wins."""
        if self._shutting_down:
            return
        if delay <= 0:
            self.add(key)
            return
        if key in self._dirty:
            return
        due = self.now() + delay
        current = self._waiting.get(key)
        if current is not None and current <= due:
            return
        self._waiting[key] = due
        self._seq += 1
        heapq.heappush(self._heap, (due, self._seq, key))
        self._arm_timer()
        self._changed()

    def add_rate_limited(self, key: K) -> float:
        """Due after the key's next backoff step; returns that delay."""
        delay = self.backoff.when(key)
        self.retries += 1
        self.add_after(key, delay)
        return delay

    def forget(self, key: K) -> None:
        self.backoff.forget(key)

    def discard(self, key: K) -> None:
        """Drop a pending delayed add (object deleted)."""
        self._waiting.pop(key, None)
        self._changed()

    # --- taking -----------------------------------------------------------------------------

    async def get(self) -> K:
        while True:
            self._promote_due()
            if self._queue:
                key = self._queue.popleft()
                self._dirty.discard(key)
                self._processing.add(key)
                self._waiting.pop(key, None)
                self._changed()
                return key
            if self._shutting_down:
                raise ShutDown()
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            finally:
                if not waiter.done():
                    waiter.cancel()

    def done(self, key: K) -> None:
        self._processing.discard(key)
        if key in self._dirty and not self._shutting_down:
            self._queue.append(key)
            self._notify()
        self._changed()

    def shut_down(self) -> None:
        self._shutting_down = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)

    # --- internals --------------------------------------------------------------------------

    def _promote_due(self) -> None:
        now = self.now()
        while self._heap and self._heap[0][0] <= now:
            due, _, key = heapq.heappop(self._heap)
            if self._waiting.get(key) != due:
                continue  # superseded by an earlier due time, an add() or a get()
            del self._waiting[key]
            if key not in self._dirty:
                self._dirty.add(key)
                self.adds += 1
                if key not in self._processing:
                    self._queue.append(key)
                    self._notify()
        self._arm_timer()

    def _arm_timer(self) -> None:
        while self._heap and self._waiting.get(self._heap[0][2]) != self._heap[0][0]:
            heapq.heappop(self._heap)
        if not self._heap:
            return
        due = self._heap[0][0]
        if self._timer is not None and self._timer.when() <= due and not self._timer.cancelled():
            return
        if self._timer is not None:
            self._timer.cancel()
        loop = asyncio.get_running_loop()
        delay = max(0.0, due - self.now())
        self._timer = loop.call_at(loop.time() + delay, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._promote_due()
        self._changed()

    def _notify(self) -> None:
        """Wake one idle worker."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def _changed(self) -> None:
        if self._on_change is not None:
            self._on_change(self)
