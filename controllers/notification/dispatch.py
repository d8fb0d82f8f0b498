"""Sending notifications: one queue and worker per Provider, retries with backoff, metrics.

A slow or failing Provider only delays its own queue; the event server never waits on it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import ssl
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiohttp
from prometheus_client import Counter, Histogram

from tide.controllers.notification.events import Event
from tide.controllers.notification.providers import (
    OutgoingRequest,
    ProviderConfig,
    ProviderConfigError,
    build_requests,
)
from tide.shared.runtime.redaction import redact

log = logging.getLogger("tide.notification.dispatch")

NOTIFICATIONS = Counter(
    "tide_notification_requests_total",
    "Notification requests sent to providers, by outcome (success, failed, dropped, invalid).",
    ["namespace", "provider", "type", "result"],
)
SEND_ATTEMPT_FAILURES = Counter(
    "tide_notification_attempt_failures_total",
    "Failed attempts to send a notification (each retry counts).",
    ["namespace", "provider", "type"],
)
SEND_DURATION = Histogram(
    "tide_notification_send_duration_seconds",
    "Time to deliver one notification request, retries included.",
    ["type"],
)


class SendError(Exception):
    def __init__(self, message: str, retryable: bool):
        super().__init__(message)
        self.retryable = retryable


def ssl_context(cfg: ProviderConfig) -> ssl.SSLContext | None:
    if not cfg.ca_pem and not cfg.client_cert_pem:
        return None
    context = ssl.create_default_context()
    if cfg.ca_pem:
        context.load_verify_locations(cadata=cfg.ca_pem.decode())
    if cfg.client_cert_pem and cfg.client_key_pem:
        # ssl only loads client key pairs from files.
        with tempfile.TemporaryDirectory() as tmp:
            cert, key = os.path.join(tmp, "tls.crt"), os.path.join(tmp, "tls.key")
            with open(cert, "wb") as f:
                f.write(cfg.client_cert_pem)
            with open(key, "wb") as f:
                f.write(cfg.client_key_pem)
            context.load_cert_chain(cert, key)
    return context


def check_ok_answer(request: OutgoingRequest, answer: bytes) -> None:
    """Slack's chat.postMessage answers 200 with {"ok": false, "error": ...} on failure."""
    try:
        parsed = json.loads(answer)
    except ValueError:
        parsed = None
    if not isinstance(parsed, dict) or parsed.get("ok") is not True:
        error = parsed.get("error") if isinstance(parsed, dict) else answer[:200].decode(errors="replace")
        raise SendError(f"{request.method} {request.url}: service answered with error: {error}", False)


class HttpSender:
    """Sends with pooled keep-alive connections: one aiohttp session per TLS identity (custom CA
    and client certificate), shared by every Provider that uses it."""

    def __init__(self) -> None:
        self._sessions: dict[str, aiohttp.ClientSession] = {}

    def _session(self, cfg: ProviderConfig) -> aiohttp.ClientSession:
        key = hashlib.sha256(
            (cfg.ca_pem or b"") + b"\0" + (cfg.client_cert_pem or b"") + b"\0" + (cfg.client_key_pem or b"")
        ).hexdigest()
        session = self._sessions.get(key)
        if session is None or session.closed:
            context = ssl_context(cfg)
            connector = aiohttp.TCPConnector(ssl=context if context is not None else True, limit=100)
            session = self._sessions[key] = aiohttp.ClientSession(connector=connector)
        return session

    async def __call__(self, cfg: ProviderConfig, request: OutgoingRequest) -> None:
        """One HTTP attempt; raises SendError (retryable for transport errors, 408, 429 and 5xx)."""
        proxy_auth = (
            aiohttp.BasicAuth(cfg.proxy_username, cfg.proxy_password)
            if cfg.proxy and cfg.proxy_username
            else None
        )
        try:
            session = self._session(cfg)
            async with session.request(
                request.method,
                request.url,
                data=request.body,
                headers=request.headers,
                proxy=cfg.proxy or None,
                proxy_auth=proxy_auth,
                timeout=aiohttp.ClientTimeout(total=cfg.timeout),
            ) as response:
                if response.status < 300:
                    answer = await response.read()
                    if request.expect == "json-ok":
                        check_ok_answer(request, answer)
                    return
                text = (await response.text(errors="replace"))[:300]
                retryable = response.status in (408, 429) or response.status >= 500
                raise SendError(f"{request.method} {request.url}: {response.status} {text}", retryable)
        except (TimeoutError, aiohttp.ClientError, OSError, ssl.SSLError, ValueError) as exc:
            raise SendError(f"{request.method} {request.url}: {type(exc).__name__}: {exc}", True) from None

    async def close(self) -> None:
        for session in self._sessions.values():
            await session.close()
        self._sessions.clear()


Sender = Callable[[ProviderConfig, OutgoingRequest], Awaitable[None]]


@dataclass
class _Job:
    cfg: ProviderConfig
    event: Event


class Dispatcher:
    def __init__(
        self,
        sender: Sender | None = None,
        max_attempts: int = 4,
        base_delay: float = 0.5,
        max_delay: float = 10.0,
        max_queue: int = 1000,
        idle_seconds: float = 60.0,
    ):
        self._http = HttpSender() if sender is None else None
        self.sender: Sender = sender or self._http  # type: ignore[assignment]
        self.max_attempts = max_attempts
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.max_queue = max_queue
        self.idle_seconds = idle_seconds
        self._queues: dict[tuple[str, str], asyncio.Queue[_Job]] = {}
        self._workers: dict[tuple[str, str], asyncio.Task[None]] = {}

    def submit(self, cfg: ProviderConfig, event: Event) -> bool:
        """Queue a notification for a Provider; False (and counted) when its queue is full."""
        key = (cfg.namespace, cfg.name)
        queue = self._queues.get(key)
        if queue is None:
            queue = self._queues[key] = asyncio.Queue(self.max_queue)
        try:
            queue.put_nowait(_Job(cfg, event))
        except asyncio.QueueFull:
            NOTIFICATIONS.labels(cfg.namespace, cfg.name, cfg.type, "dropped").inc()
            log.error("provider %s/%s queue is full, notification dropped", cfg.namespace, cfg.name)
            return False
        worker = self._workers.get(key)
        if worker is None or worker.done():
            self._workers[key] = asyncio.create_task(self._work(key, queue))
        return True

    async def _work(self, key: tuple[str, str], queue: asyncio.Queue[_Job]) -> None:
        while True:
            try:
                job = await asyncio.wait_for(queue.get(), self.idle_seconds)
            except TimeoutError:
                if queue.empty():
                    self._workers.pop(key, None)
                    return
                continue
            try:
                await self.deliver(job.cfg, job.event)
            except Exception:
                log.exception("delivering to provider %s/%s failed", *key)
            finally:
                queue.task_done()

    async def deliver(self, cfg: ProviderConfig, event: Event) -> bool:
        labels = (cfg.namespace, cfg.name, cfg.type)
        try:
            requests = build_requests(cfg, event)
        except ProviderConfigError as exc:
            NOTIFICATIONS.labels(*labels, "invalid").inc()
            log.error("provider %s/%s: %s", cfg.namespace, cfg.name, redact(str(exc), cfg.secret_values))
            return False
        ok = True
        for request in requests:
            start = time.monotonic()
            if await self._send_with_retry(cfg, request):
                NOTIFICATIONS.labels(*labels, "success").inc()
            else:
                NOTIFICATIONS.labels(*labels, "failed").inc()
                ok = False
            SEND_DURATION.labels(cfg.type).observe(time.monotonic() - start)
        return ok

    async def _send_with_retry(self, cfg: ProviderConfig, request: OutgoingRequest) -> bool:
        delay = self.base_delay
        for attempt in range(1, self.max_attempts + 1):
            try:
                await self.sender(cfg, request)
                return True
            except SendError as exc:
                SEND_ATTEMPT_FAILURES.labels(cfg.namespace, cfg.name, cfg.type).inc()
                message = redact(str(exc), cfg.secret_values)
                if not exc.retryable or attempt == self.max_attempts:
                    log.error(
                        "failed to send notification via %s/%s (attempt %d): %s",
                        cfg.namespace,
                        cfg.name,
                        attempt,
                        message,
                    )
                    return False
                log.warning(
                    "sending notification via %s/%s failed (attempt %d), retrying in %.1fs: %s",
                    cfg.namespace,
                    cfg.name,
                    attempt,
                    delay,
                    message,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.max_delay)
        return False

    async def drain(self, seconds: float = 10.0) -> None:
        """Wait until every queued notification has been tried (tests, shutdown)."""
        queues = list(self._queues.values())
        await asyncio.wait_for(asyncio.gather(*(q.join() for q in queues)), seconds)

    async def close(self) -> None:
        for task in self._workers.values():
            task.cancel()
        await asyncio.gather(*self._workers.values(), return_exceptions=True)
        self._workers.clear()
        if self._http is not None:
            await self._http.close()
