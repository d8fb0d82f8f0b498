"""Client-side request rate limit (--kube-api-qps / --kube-api-burst): client-go's token bucket, one
per API resource, as Flux's controllers have it (controller-runtime makes a REST client, and with it
a rate limiter, for each kind). A single bucket for the whole process would throttle a controller
that writes many kinds far below what the same flags allow Flux."""

from __future__ import annotations

import asyncio
import time


class TokenBucket:
    def __init__(self, qps: float, burst: int) -> None:
        self.qps = qps
        self.burst = max(1, burst)
        self._tokens = float(self.burst)
        self._last = time.monotonic()
        self._lock = asyncio.Lock()

    def _refill(self) -> None:
        now = time.monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.qps)
        self._last = now

    async def acquire(self) -> None:
        if self.qps <= 0:
            return
        async with self._lock:
            self._refill()
            if self._tokens < 1:
                await asyncio.sleep((1 - self._tokens) / self.qps)
                self._refill()
            self._tokens -= 1


NAMESPACE_SUBRESOURCES = ("status", "finalize")


def resource_of(path: str) -> str:
    """The API resource a request path addresses, '<group/version>/<resource>': the key of its bucket.
    Discovery of a group version is '<group/version>/'; anything else (/version, /openapi) is its
    first segment."""
    parts = [p for p in path.split("?", 1)[0].split("/") if p]
    if parts[:1] == ["api"] and len(parts) >= 2:
        version, rest = parts[1], parts[2:]
    elif parts[:1] == ["apis"] and len(parts) >= 3:
        version, rest = f"{parts[1]}/{parts[2]}", parts[3:]
    else:
        return parts[0] if parts else ""
    if len(rest) >= 3 and rest[0] == "namespaces" and rest[2] not in NAMESPACE_SUBRESOURCES:
        rest = rest[2:]  # a namespaced object's path; /namespaces/<name>[/status] is the Namespace
    return f"{version}/{rest[0] if rest else ''}"


class RateLimits:
    """A token bucket per API resource, each with the flags' qps and burst."""

    def __init__(self, qps: float, burst: int) -> None:
        self.qps = qps
        self.burst = burst
        self._buckets: dict[str, TokenBucket] = {}

    async def acquire(self, path: str) -> None:
        if self.qps <= 0:
            return
        key = resource_of(path)
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket(self.qps, self.burst)
        await bucket.acquire()
