"""Events: a Kubernetes Event on the object (a repeat of the same reason and message bumps its
count) and the same event in Flux's JSON POSTed to --events-addr.

Both go through bounded queues drained by background tasks, so recording never blocks a reconcile:
when the notification endpoint is down the POSTs are retried a few times and then dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp

from tide.shared.kube import KubeApiError, KubeClient

log = logging.getLogger("tide.runtime.events")

NORMAL = "Normal"
WARNING = "Warning"
TRACE = "Trace"
"""Flux's trace events: recorded as Normal Kubernetes Events only, never sent to --events-addr."""
FLUX_MESSAGE_LIMIT = 39000
KUBE_MESSAGE_LIMIT = 32768
QUEUE_SIZE = 1024
DEDUP_CACHE_SIZE = 4096
POST_TIMEOUT = 5.0
POST_ATTEMPTS = 4


@dataclass(frozen=True)
class ObjectReference:
    api_version: str
    kind: str
    name: str
    namespace: str = ""
    uid: str = ""
    resource_version: str = ""

    @classmethod
    def of(cls, obj: dict[str, Any]) -> ObjectReference:
        meta = obj.get("metadata") or {}
        return cls(
            api_version=str(obj.get("apiVersion", "")),
            kind=str(obj.get("kind", "")),
            name=str(meta.get("name", "")),
            namespace=str(meta.get("namespace") or ""),
            uid=str(meta.get("uid") or ""),
            resource_version=str(meta.get("resourceVersion") or ""),
        )

    def to_dict(self) -> dict[str, str]:
        out = {
            "kind": self.kind,
            "namespace": self.namespace,
            "name": self.name,
            "uid": self.uid,
            "apiVersion": self.api_version,
            "resourceVersion": self.resource_version,
        }
        return {k: v for k, v in out.items() if v}

    @property
    def group(self) -> str:
        return self.api_version.rpartition("/")[0]


@dataclass
class Event:
    ref: ObjectReference
    type: str
    reason: str
    message: str
    metadata: dict[str, str] = field(default_factory=dict)
    timestamp: datetime = field(default_factory=lambda: datetime.now(UTC))


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def qualify_metadata(group: str, metadata: dict[str, str] | None) -> dict[str, str]:
    """Keys without a prefix get the object's API group (`revision` -> `<group>/revision`)."""
    out: dict[str, str] = {}
    for key, value in (metadata or {}).items():
        out[key if "/" in key or not group else f"{group}/{key}"] = str(value)
    return out


def flux_event_payload(event: Event, controller: str, instance: str) -> dict[str, Any]:
    """The event as Flux controllers POST it to the notification controller."""
    payload: dict[str, Any] = {
        "involvedObject": event.ref.to_dict(),
        "severity": "error" if event.type == WARNING else "info",
        "timestamp": rfc3339(event.timestamp),
        "message": event.message[:FLUX_MESSAGE_LIMIT],
        "reason": event.reason,
        "reportingController": controller,
        "reportingInstance": instance,
    }
    if event.metadata:
        payload["metadata"] = dict(event.metadata)
    return payload


class EventDeduplicator:
    """Remembers the Kubernetes Event recorded for (object, type, reason, message) so a repeat
    updates that Event's count instead of creating a new one."""

    def __init__(self, size: int = DEDUP_CACHE_SIZE) -> None:
        self.size = size
        self._seen: OrderedDict[tuple[str, ...], tuple[str, str, int]] = OrderedDict()

    @staticmethod
    def key(event: Event) -> tuple[str, ...]:
        ref = event.ref
        return (
            ref.uid or f"{ref.api_version}/{ref.kind}/{ref.namespace}/{ref.name}",
            event.type,
            event.reason,
            event.message,
        )

    def lookup(self, event: Event) -> tuple[str, str, int] | None:
        """(event name, namespace, count) of the Event already recorded for this one."""
        found = self._seen.get(self.key(event))
        if found is not None:
            self._seen.move_to_end(self.key(event))
        return found

    def remember(self, event: Event, name: str, namespace: str, count: int) -> None:
        self._seen[self.key(event)] = (name, namespace, count)
        self._seen.move_to_end(self.key(event))
        while len(self._seen) > self.size:
            self._seen.popitem(last=False)

    def forget(self, event: Event) -> None:
        self._seen.pop(self.key(event), None)


def kube_event_name(ref: ObjectReference) -> str:
    return f"{ref.name}.{time.time_ns():x}"


class EventRecorder:
    def __init__(
        self,
        kube: KubeClient | None,
        controller: str,
        events_addr: str | None = None,
        instance: str | None = None,
        queue_size: int = QUEUE_SIZE,
    ) -> None:
        self.kube = kube
        self.controller = controller
        self.events_addr = events_addr or None
        self.instance = instance or socket.gethostname()
        self.dedup = EventDeduplicator()
        self._kube_queue: asyncio.Queue[Event] = asyncio.Queue(queue_size)
        self._post_queue: asyncio.Queue[Event] = asyncio.Queue(queue_size)
        self._tasks: list[asyncio.Task[None]] = []
        self._session: aiohttp.ClientSession | None = None
        self.dropped = 0
        self.posted = 0
        self.recorded = 0

    # --- recording (never blocks) ----------------------------------------------------------

    def record(
        self,
        obj: dict[str, Any],
        type_: str,
        reason: str,
        message: str,
        metadata: dict[str, str] | None = None,
    ) -> None:
        if type_ not in (NORMAL, WARNING, TRACE):
            raise ValueError(f"event type must be Normal, Warning or Trace, not {type_!r}")
        ref = ObjectReference.of(obj)
        event = Event(
            ref, NORMAL if type_ == TRACE else type_, reason, message, qualify_metadata(ref.group, metadata)
        )
        self._offer(self._kube_queue, event)
        if self.events_addr and type_ != TRACE:
            self._offer(self._post_queue, event)

    def _offer(self, queue: asyncio.Queue[Event], event: Event) -> None:
        try:
            queue.put_nowait(event)
        except asyncio.QueueFull:
            self.dropped += 1
            log.warning("event queue full, dropping event", extra={"reason": event.reason})

    # --- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._drain_kube(), name="events-kube")]
        if self.events_addr:
            self._tasks.append(loop.create_task(self._drain_post(), name="events-post"))

    async def stop(self, drain_seconds: float = 2.0) -> None:
        """Give queued events a moment to go out, then stop."""
        deadline = time.monotonic() + drain_seconds
        while not (self._kube_queue.empty() and self._post_queue.empty()) and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        if self._session is not None:
            await self._session.close()
            self._session = None

    # --- Kubernetes Events -----------------------------------------------------------------

    async def _drain_kube(self) -> None:
        while True:
            event = await self._kube_queue.get()
            try:
                await self.write_kube_event(event)
                self.recorded += 1
            except asyncio.CancelledError:
                raise
            except Exception as err:
                log.warning("could not record event %s: %s", event.reason, err)

    async def write_kube_event(self, event: Event) -> dict[str, Any] | None:
        if self.kube is None:
            return None
        now = rfc3339(event.timestamp)
        seen = self.dedup.lookup(event)
        if seen is not None:
            name, namespace, count = seen
            try:
                patched = await self.kube.patch_merge(
                    "v1", "Event", name, namespace, {"count": count + 1, "lastTimestamp": now}
                )
                self.dedup.remember(event, name, namespace, count + 1)
                result: dict[str, Any] = patched
                return result
            except KubeApiError as err:
                if not err.not_found:
                    raise
                self.dedup.forget(event)
        ref = event.ref
        namespace = ref.namespace or "default"
        body: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": kube_event_name(ref), "namespace": namespace},
            "involvedObject": ref.to_dict(),
            "reason": event.reason,
            "message": event.message[:KUBE_MESSAGE_LIMIT],
            "type": event.type,
            "source": {"component": self.controller},
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
            "reportingComponent": self.controller,
            "reportingInstance": self.instance,
        }
        if event.metadata:
            body["metadata"]["annotations"] = dict(event.metadata)
        created = await self.kube.create(body)
        self.dedup.remember(event, body["metadata"]["name"], namespace, 1)
        written: dict[str, Any] = created
        return written

    # --- Flux notification POSTs -----------------------------------------------------------

    async def _drain_post(self) -> None:
        while True:
            event = await self._post_queue.get()
            try:
                await self.post(event)
            except asyncio.CancelledError:
                raise
            except Exception as err:
                log.warning("could not post event %s to %s: %s", event.reason, self.events_addr, err)

    async def post(self, event: Event) -> bool:
        """POST with retries (none after a 429 or other 4xx); True when delivered."""
        if not self.events_addr:
            return False
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=POST_TIMEOUT))
        payload = flux_event_payload(event, self.controller, self.instance)
        delay = 0.5
        for attempt in range(POST_ATTEMPTS):
            try:
                async with self._session.post(self.events_addr, json=payload) as resp:
                    if resp.status < 300:
                        self.posted += 1
                        return True
                    if resp.status < 500:
                        log.debug("event endpoint rejected event: %s", resp.status)
                        return False
            except (aiohttp.ClientError, TimeoutError, OSError) as err:
                log.debug("event post attempt %d failed: %s", attempt + 1, err)
            if attempt + 1 < POST_ATTEMPTS:
                await asyncio.sleep(delay * random.uniform(0.8, 1.2))
                delay *= 2
        return False
