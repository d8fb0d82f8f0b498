"""tide-notification-controller: events in (--events-addr), alerts out, webhook receivers
(--receiverAddr), and the Provider/Alert/Receiver reconcilers."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from tide.controllers.notification.dispatch import Dispatcher
from tide.controllers.notification.events import EventServer
from tide.controllers.notification.receivers import ReceiverServer, google_tokeninfo
from tide.controllers.notification.routing import NOTIFICATION_API, EventRouter
from tide.shared.api.meta import parse_duration

log = logging.getLogger("tide.notification")

CONTROLLER_NAME = "notification-controller"
DEFAULT_EVENTS_LISTEN = ":9090"


class NotificationServers:
    """The event server and the receiver server, sharing one API client and watch caches."""

    def __init__(
        self,
        events_addr: str,
        receiver_addr: str,
        rate_limit_interval: float,
        no_cross_namespace_refs: bool,
        kubeconfig: str | None = None,
        qps: float = 50.0,
        burst: int = 300,
    ):
        self.events_addr = events_addr
        self.receiver_addr = receiver_addr
        self.rate_limit_interval = rate_limit_interval
        self.no_cross_namespace_refs = no_cross_namespace_refs
        self.kubeconfig = kubeconfig
        self.qps, self.burst = qps, burst
        self.kube: Any = None
        self.dispatcher = Dispatcher()
        self.event_server: EventServer | None = None
        self.receiver_server: ReceiverServer | None = None
        self.recorder: Any = None

    async def _cached(self, api_version: str, kind: str) -> Callable[[], Awaitable[list[dict[str, Any]]]]:
        """Read from a watch cache once it has synced; list from the API until then."""
        informer = self.kube.informer(api_version, kind)
        try:
            # Listeners must not wait long for caches: until synced, reads go to the API.
            await informer.wait_synced(3)
        except Exception as exc:
            log.warning("watch cache for %s not ready (%s), reading from the API", kind, exc)

        async def items() -> list[dict[str, Any]]:
            if informer.synced:
                return list(informer.items())
            result: list[dict[str, Any]] = await self.kube.list(api_version, kind)
            return result

        return items

    async def start(self) -> None:
        from tide.shared.kube import KubeClient

        self.kube = await KubeClient.from_kubeconfig(self.kubeconfig, qps=self.qps, burst=self.burst)
        alerts, receivers = await asyncio.gather(
            self._cached(NOTIFICATION_API, "Alert"),
            self._cached("notification.toolkit.fluxcd.io/v1", "Receiver"),
        )
        provider_cache = self.kube.informer(NOTIFICATION_API, "Provider")

        async def provider(namespace: str, name: str) -> dict[str, Any] | None:
            if provider_cache.synced:
                found: dict[str, Any] | None = provider_cache.get(namespace, name)
                return found
            fetched: dict[str, Any] | None = await self.kube.get(
                NOTIFICATION_API, "Provider", name, namespace
            )
            return fetched

        from tide.shared.runtime import EventRecorder

        self.recorder = EventRecorder(self.kube, CONTROLLER_NAME)
        await self.recorder.start()
        router = EventRouter(
            self.kube, self.dispatcher, alerts, self.no_cross_namespace_refs, provider, self.recorder
        )
        self.event_server = EventServer(self.events_addr, router, self.rate_limit_interval)
        self.receiver_server = ReceiverServer(
            self.receiver_addr,
            self.kube,
            receivers,
            self.no_cross_namespace_refs,
            gcr_verifier=google_tokeninfo,
        )

        await self.event_server.start()
        await self.receiver_server.start()

    async def stop(self) -> None:
        for server in (self.receiver_server, self.event_server):
            if server is not None:
                await server.stop()
        try:
            await self.dispatcher.drain(5)
        except TimeoutError:
            log.warning("notifications still queued at shutdown were dropped")
        await self.dispatcher.close()
        if self.recorder is not None:
            await self.recorder.stop()
        if self.kube is not None:
            await self.kube.close()


def arg_parser() -> argparse.ArgumentParser:
    from tide.shared.runtime import controller_arg_parser
    from tide.shared.runtime.process import add_no_cross_namespace_refs

    parser = controller_arg_parser(CONTROLLER_NAME, 4)
    parser.add_argument(
        "--receiverAddr",
        dest="receiver_addr",
        default=":9292",
        help="The address the webhook receiver server binds to.",
    )
    parser.add_argument(
        "--rate-limit-interval",
        dest="rate_limit_interval",
        default="5m",
        help="Interval in which identical events are sent once (0 disables).",
    )
    add_no_cross_namespace_refs(parser)
    # Here --events-addr is where events are received, not where they are sent.
    parser.set_defaults(events_addr=DEFAULT_EVENTS_LISTEN)
    return parser


def main(argv: list[str] | None = None) -> int:
    from tide.controllers.notification.reconcilers import (
        AlertReconciler,
        ProviderReconciler,
        ReceiverReconciler,
    )
    from tide.shared.runtime import run_controller

    args = arg_parser().parse_args(argv)
    rate = str(args.rate_limit_interval)
    rate_seconds = parse_duration(rate, go=True) if rate else 0.0
    servers = NotificationServers(
        events_addr=args.events_addr,
        receiver_addr=args.receiver_addr,
        rate_limit_interval=rate_seconds,
        no_cross_namespace_refs=args.no_cross_namespace_refs,
        kubeconfig=args.kubeconfig,
        qps=args.kube_api_qps,
        burst=args.kube_api_burst,
    )
    # The notification controller does not send its own events to itself over HTTP.
    args.events_addr = ""
    result = run_controller(
        args,
        reconcilers=[ReceiverReconciler(), ProviderReconciler(), AlertReconciler()],
        servers=[servers],
    )
    if asyncio.iscoroutine(result):
        result = asyncio.run(result)
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
