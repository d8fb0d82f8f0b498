"""Flux events in: parse, clean up, de-duplicate, and the HTTP server on --events-addr.

The other controllers POST Flux's event JSON (pkg apis/event/v1beta1) to `/`. A malformed or
oversized body is a 4xx and a log line; an event seen again inside --rate-limit-interval is 429;
anything else is 202 and handed to the `on_event` callback without waiting for providers.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from prometheus_client import Counter

from tide.shared import boundedjson

log = logging.getLogger("tide.notification.events")

MAX_EVENT_BODY = 1 << 20
MAX_MESSAGE_LENGTH = 39000
SEVERITIES = ("info", "error", "trace")
EVENT_PREFIX = "event.toolkit.fluxcd.io/"


EVENTS = Counter(
    "tide_notification_events_total",
    "Events POSTed to the event server, by outcome (accepted, duplicate, invalid, too_large).",
    ["result"],
)


class InvalidEvent(ValueError):
    """The body is not a Flux event."""


@dataclass
class InvolvedObject:
    kind: str
    name: str
    namespace: str
    api_version: str = ""
    uid: str = ""
    resource_version: str = ""

    @property
    def group(self) -> str:
        return self.api_version.rpartition("/")[0] if "/" in self.api_version else ""

    def to_json(self) -> dict[str, str]:
        out = {"kind": self.kind, "namespace": self.namespace, "name": self.name}
        if self.uid:
            out["uid"] = self.uid
        if self.api_version:
            out["apiVersion"] = self.api_version
        if self.resource_version:
            out["resourceVersion"] = self.resource_version
        return out


@dataclass
class Event:
    involved_object: InvolvedObject
    severity: str
    timestamp: str
    message: str
    reason: str
    reporting_controller: str
    metadata: dict[str, str] = field(default_factory=dict)
    reporting_instance: str = ""

    def to_json(self) -> dict[str, Any]:
        """Flux's wire form (field names and omitempty as eventv1.Event)."""
        out: dict[str, Any] = {
            "involvedObject": self.involved_object.to_json(),
            "severity": self.severity,
            "timestamp": self.timestamp,
            "message": self.message,
            "reason": self.reason,
        }
        if self.metadata:
            out["metadata"] = dict(self.metadata)
        out["reportingController"] = self.reporting_controller
        if self.reporting_instance:
            out["reportingInstance"] = self.reporting_instance
        return out

    def with_metadata(self, metadata: dict[str, str]) -> Event:
        return Event(
            involved_object=self.involved_object,
            severity=self.severity,
            timestamp=self.timestamp,
            message=self.message,
            reason=self.reason,
            reporting_controller=self.reporting_controller,
            metadata=dict(metadata),
            reporting_instance=self.reporting_instance,
        )


def _string(obj: dict[str, Any], key: str, required: bool = False) -> str:
    value = obj.get(key, "")
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise InvalidEvent(f"{key} must be a string")
    if required and not value:
        raise InvalidEvent(f"{key} is required")
    return value


def parse_event(body: bytes) -> Event:
    """Decode and validate one event; raises InvalidEvent with a message fit for the log."""
    try:
        raw = boundedjson.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidEvent(f"decoding the request body failed: {exc}") from None
    if not isinstance(raw, dict):
        raise InvalidEvent("event must be a JSON object")
    io = raw.get("involvedObject")
    if not isinstance(io, dict):
        raise InvalidEvent("involvedObject is required")
    involved = InvolvedObject(
        kind=_string(io, "kind", required=True),
        name=_string(io, "name", required=True),
        namespace=_string(io, "namespace", required=True),
        api_version=_string(io, "apiVersion"),
        uid=_string(io, "uid"),
        resource_version=_string(io, "resourceVersion"),
    )
    severity = _string(raw, "severity", required=True)
    if severity not in SEVERITIES:
        raise InvalidEvent(f"severity must be one of {', '.join(SEVERITIES)}")
    message = _string(raw, "message", required=True)
    if len(message) > MAX_MESSAGE_LENGTH:
        raise InvalidEvent(f"message longer than {MAX_MESSAGE_LENGTH} characters")
    metadata_raw = raw.get("metadata") or {}
    if not isinstance(metadata_raw, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in metadata_raw.items()
    ):
        raise InvalidEvent("metadata must be a map of strings")
    timestamp = raw.get("timestamp", "")
    if not isinstance(timestamp, str):
        raise InvalidEvent("timestamp must be an RFC 3339 string")
    return Event(
        involved_object=involved,
        severity=severity,
        timestamp=timestamp,
        message=message,
        reason=_string(raw, "reason", required=True),
        reporting_controller=_string(raw, "reportingController", required=True),
        metadata=dict(metadata_raw),
        reporting_instance=_string(raw, "reportingInstance"),
    )


def clean_metadata(event: Event) -> Event:
    """Keep only metadata meant for alerting, prefixes stripped (Flux's cleanupMetadata).

    Kept: `<object group>/<key>` (minus checksum and digest) and `event.toolkit.fluxcd.io/<key>`.
    """
    group = event.involved_object.group
    excluded = {f"{group}/checksum", f"{group}/digest"} if group else set()
    kept: dict[str, str] = {}
    for key, value in event.metadata.items():
        if group and key.startswith(group + "/"):
            if key.lower() in excluded:
                continue
            kept[key[len(group) + 1 :]] = value
        elif key.startswith(EVENT_PREFIX):
            kept[key[len(EVENT_PREFIX) :]] = value
    return event.with_metadata(kept)


def dedup_key(event: Event) -> str:
    """sha256 over the fields that make two events the same notification (after clean_metadata)."""
    parts = [
        "event",
        "name=" + event.involved_object.name,
        "namespace=" + event.involved_object.namespace,
        "kind=" + event.involved_object.kind,
        "message=" + event.message,
    ]
    for key in ("revision", "originRevision", "token"):
        if key in event.metadata:
            parts.append(f"{key}={event.metadata[key]}")
    return hashlib.sha256("/".join(parts).encode()).hexdigest()


class DedupWindow:
    """One event per key per interval (Flux's rate limiter with one token per --rate-limit-interval)."""

    def __init__(self, interval: float, clock: Callable[[], float] = time.monotonic, max_keys: int = 100_000):
        self.interval = interval
        self.clock = clock
        self.max_keys = max_keys
        self._seen: dict[str, float] = {}

    def admit(self, key: str) -> bool:
        if self.interval <= 0:
            return True
        now = self.clock()
        first = self._seen.get(key)
        if first is not None and now - first < self.interval:
            return False
        if len(self._seen) >= self.max_keys:
            self._expire(now)
        self._seen[key] = now
        return True

    def _expire(self, now: float) -> None:
        self._seen = {k: t for k, t in self._seen.items() if now - t < self.interval}
        while len(self._seen) >= self.max_keys:
            self._seen.pop(next(iter(self._seen)))


def parse_listen_address(address: str, default_port: int) -> tuple[str, int]:
    """Go-style listen address (`:9090`, `127.0.0.1:9090`, `http://host:port/`) to host and port."""
    addr = address.strip()
    if "://" in addr:
        addr = addr.split("://", 1)[1]
    addr = addr.rstrip("/")
    host, sep, port = addr.rpartition(":")
    if not sep:
        return addr or "0.0.0.0", default_port
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port) if port else default_port


EventHandler = Callable[[Event], Awaitable[None]]


class EventServer:
    """aiohttp server for Flux events; the handler runs in the background so senders never wait."""

    def __init__(
        self,
        address: str,
        on_event: EventHandler,
        rate_limit_interval: float = 300.0,
        max_body: int = MAX_EVENT_BODY,
    ):
        self.host, self.port = parse_listen_address(address, 9090)
        self.on_event = on_event
        self.dedup = DedupWindow(rate_limit_interval)
        self.max_body = max_body
        self._runner: web.AppRunner | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def app(self) -> web.Application:
        app = web.Application(client_max_size=self.max_body)
        app.router.add_post("/", self.handle)
        app.router.add_post("/{tail:.*}", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.Response:
        if request.content_length is not None and request.content_length > self.max_body:
            log.warning("event body too large: %d bytes", request.content_length)
            EVENTS.labels("too_large").inc()
            return web.Response(status=413, text="request body too large\n")
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            log.warning("event body too large")
            EVENTS.labels("too_large").inc()
            return web.Response(status=413, text="request body too large\n")
        try:
            event = clean_metadata(parse_event(body))
        except InvalidEvent as exc:
            log.warning("rejected event: %s", exc)
            EVENTS.labels("invalid").inc()
            return web.Response(status=400, text=f"{exc}\n")
        if not self.dedup.admit(dedup_key(event)):
            log.debug(
                "Discarding event, rate limiting duplicate events",
                extra={"kind": event.involved_object.kind, "objectName": event.involved_object.name},
            )
            EVENTS.labels("duplicate").inc()
            return web.Response(status=429, text="duplicate event\n")
        EVENTS.labels("accepted").inc()
        task = asyncio.create_task(self._dispatch(event))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return web.Response(status=202)

    async def _dispatch(self, event: Event) -> None:
        try:
            await self.on_event(event)
        except Exception:
            log.exception(
                "dispatching event for %s/%s failed", event.involved_object.kind, event.involved_object.name
            )

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        if self.port == 0:
            self.port = self._runner.addresses[0][1]
        log.info("event server listening on %s:%d", self.host, self.port)

    async def stop(self) -> None:
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=5)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
