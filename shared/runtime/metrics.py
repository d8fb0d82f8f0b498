"""Prometheus metrics with Flux's and controller-runtime's names, served on --metrics-addr."""

from __future__ import annotations

import logging

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Gauge, Histogram, generate_latest

from tide.shared.runtime.addr import Listener

log = logging.getLogger("tide.runtime.metrics")


def exponential_buckets_range(low: float, high: float, count: int) -> list[float]:
    """Prometheus' ExponentialBucketsRange: count buckets from low to high, evenly spaced in log."""
    factor = (high / low) ** (1 / (count - 1))
    return [low * factor**i for i in range(count)]


RECONCILE_DURATION = Histogram(
    "gotk_reconcile_duration_seconds",
    "The duration in seconds of a GitOps Toolkit resource reconciliation.",
    ["kind", "name", "namespace"],
    buckets=exponential_buckets_range(10e-3, 1800, 10),
)
RECONCILE_TOTAL = Counter(
    "controller_runtime_reconcile_total",
    "Total number of reconciliations per controller",
    ["controller", "result"],
)
RECONCILE_ERRORS = Counter(
    "controller_runtime_reconcile_errors_total",
    "Total number of reconciliation errors per controller",
    ["controller"],
)
RECONCILE_TIME = Histogram(
    "controller_runtime_reconcile_time_seconds",
    "Length of time per reconciliation per controller",
    ["controller"],
)
ACTIVE_WORKERS = Gauge(
    "controller_runtime_active_workers",
    "Number of currently used workers per controller",
    ["controller"],
)
MAX_CONCURRENT = Gauge(
    "controller_runtime_max_concurrent_reconciles",
    "Maximum number of concurrent reconciles per controller",
    ["controller"],
)
WORKQUEUE_DEPTH = Gauge("workqueue_depth", "Current depth of workqueue", ["name"])
WORKQUEUE_ADDS = Counter("workqueue_adds_total", "Total number of adds handled by workqueue", ["name"])
WORKQUEUE_RETRIES = Counter(
    "workqueue_retries_total", "Total number of retries handled by workqueue", ["name"]
)
LEADER = Gauge(
    "leader_election_master_status",
    "Gauge of if the reporting system is master of the relevant lease, 0 indicates backup, "
    "1 indicates master.",
    ["name"],
)


def forget_object(kind: str, namespace: str, name: str) -> None:
    """Drop an object's series once it is deleted."""
    try:
        RECONCILE_DURATION.remove(kind, name, namespace)
    except KeyError:
        pass


class MetricsServer:
    """GET /metrics in the Prometheus text format."""

    leader_only = False

    def __init__(self, address: str) -> None:
        self.listener = Listener(address, self._app())

    def _app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        return app

    async def _metrics(self, request: web.Request) -> web.Response:
        body = generate_latest(REGISTRY)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    @property
    def port(self) -> int | None:
        port: int | None = self.listener.port
        return port

    async def start(self) -> None:
        await self.listener.start()
        if self.listener.port is not None:
            log.info("metrics server listening", extra={"addr": self.listener.bound})

    async def stop(self) -> None:
        await self.listener.stop()
