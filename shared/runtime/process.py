"""A controller process: Flux's common flags, then watch, elect, reconcile, serve, shut down."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Coroutine, Sequence
from typing import Any, Protocol

from tide.shared.api.meta import parse_duration
from tide.shared.kube import KubeClient, pod_namespace
from tide.shared.kube.config import use_small_tls_read_buffers
from tide.shared.kube.kubeconfig_secret import KubeconfigPolicy
from tide.shared.runtime.events import EventRecorder
from tide.shared.runtime.health import HealthServer
from tide.shared.runtime.kind_controller import KindController
from tide.shared.runtime.leader import LeaderElector
from tide.shared.runtime.logs import setup_logging
from tide.shared.runtime.metrics import MetricsServer
from tide.shared.runtime.reconciler import Reconciler

log = logging.getLogger("tide.runtime.controller")

DEFAULT_RUNTIME_NAMESPACE = "flux-system"


class Server(Protocol):
    """Started with the process (or once leader, when `leader_only` is True) and stopped with it."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


def parse_bool(value: str | bool) -> bool:
    if isinstance(value, bool):
        return value
    lowered = value.strip().lower()
    if lowered in ("1", "t", "true", "yes", "y", "on"):
        return True
    if lowered in ("0", "f", "false", "no", "n", "off"):
        return False
    raise argparse.ArgumentTypeError(f"invalid boolean {value!r}")


def parse_duration_flag(value: str) -> float:
    """A Go duration flag (`30s`, `15m`, `750ms`) as seconds."""
    try:
        return parse_duration(value, go=True)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from err


def add_bool(parser: argparse.ArgumentParser, flag: str, default: bool, help: str) -> None:
    """A Go-style boolean flag: `--flag`, `--flag=true`, `--flag=false`."""
    parser.add_argument(
        flag, type=parse_bool, nargs="?", const=True, default=default, metavar="BOOL", help=help
    )


class UnavailableFlag(Exception):
    """A Flux flag Tide knows but does not implement, set on the command line: the controller
    refuses to start rather than run without what the operator asked for."""


class _RefuseWhenSet(argparse.Action):
    """Parses the flag; a non-empty value is recorded in `args.unavailable_flags` (the controller
    exits on it before doing anything)."""

    def __init__(self, option_strings: Sequence[str], dest: str, reason: str = "", **kwargs: Any) -> None:
        super().__init__(option_strings, dest, default="", metavar="VALUE", **kwargs)
        self.reason = reason

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        setattr(namespace, self.dest, values)
        if values:
            refused = UnavailableFlag(f"{option_string} is set but {self.reason}; remove the flag")
            namespace.unavailable_flags = (*getattr(namespace, "unavailable_flags", ()), refused)


def add_unavailable(parser: argparse.ArgumentParser, flag: str, reason: str) -> None:
    """A Flux flag Tide does not implement yet: accepted empty, refused (exit 1) when set."""
    parser.add_argument(flag, action=_RefuseWhenSet, reason=reason, help=f"Not available: {reason}.")


def add_requeue_dependency(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--requeue-dependency",
        type=parse_duration_flag,
        default=30.0,
        help="The interval at which failing dependencies are reevaluated.",
    )


def add_source_storage_addr(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--source-storage-addr",
        default="",
        help="The source controllers' storage addresses (host[:port], comma-separated; their "
        "--storage-adv-addr): artifacts are downloaded only from there (default: "
        "source-controller.<runtime namespace>.svc.cluster.local.).",
    )


def source_storage_addresses(options: Any) -> list[str]:
    """--source-storage-addr (comma-separated), by default the source controller's in-cluster
    Service in the runtime namespace, as its --storage-adv-addr advertises it."""
    flag = str(getattr(options, "source_storage_addr", "") or "")
    if flag:
        return [address.strip() for address in flag.split(",") if address.strip()]
    namespace = runtime_namespace(options) if options is not None else "flux-system"
    return [f"source-controller.{namespace}.svc.cluster.local."]


def add_no_cross_namespace_refs(parser: argparse.ArgumentParser) -> None:
    add_bool(
        parser, "--no-cross-namespace-refs", False, "Disallow references to objects in other namespaces."
    )


def add_impersonation_flags(parser: argparse.ArgumentParser) -> None:
    """Flux's flags for objects that apply as a tenant or to a remote cluster."""
    parser.add_argument(
        "--default-service-account",
        default="",
        help="The ServiceAccount impersonated (in the object's namespace, on the target cluster) "
        "when an object sets no spec.serviceAccountName.",
    )
    add_bool(
        parser,
        "--insecure-kubeconfig-exec",
        False,
        "Allow kubeconfig Secrets (spec.kubeConfig.secretRef) to run exec credential plugins and "
        "auth-provider entries in the controller.",
    )
    add_bool(
        parser,
        "--insecure-kubeconfig-tls",
        False,
        "Allow kubeconfig Secrets to name certificate, key and token files on the controller's disk "
        "and to disable TLS verification (insecure-skip-tls-verify).",
    )
    # Flux reads it for spec.kubeConfig.configMapRef (workload identity for cloud clusters), which
    # Tide refuses: refusing to start beats accepting and ignoring it.
    add_unavailable(
        parser,
        "--default-kubeconfig-service-account",
        "it names the ServiceAccount of spec.kubeConfig.configMapRef (workload identity for cloud "
        "clusters), which Tide does not support yet",
    )


def kubeconfig_policy(args: argparse.Namespace) -> KubeconfigPolicy:
    return KubeconfigPolicy(
        allow_exec=bool(args.insecure_kubeconfig_exec), allow_insecure_tls=bool(args.insecure_kubeconfig_tls)
    )


def feature_gates(args: argparse.Namespace) -> dict[str, bool]:
    gates: dict[str, bool] = {}
    for item in str(getattr(args, "feature_gates", "") or "").split(","):
        if "=" in item:
            key, _, value = item.partition("=")
            gates[key.strip()] = parse_bool(value)
    return gates


def _unknown_feature_gates(args: argparse.Namespace) -> list[UnavailableFlag]:
    known = getattr(args, "known_feature_gates", ())
    try:
        gates = feature_gates(args)
    except argparse.ArgumentTypeError as err:
        return [UnavailableFlag(f"--feature-gates: {err}")]
    return [
        UnavailableFlag(f"--feature-gates: {gate} is not a feature gate of this controller; known: {known}")
        for gate in gates
        if gate not in known
    ]


def refuse_unavailable_flags(args: argparse.Namespace) -> None:
    """Exit 1 with one error log line per unavailable flag that is set (or unknown feature gate)."""
    refused = (*getattr(args, "unavailable_flags", ()), *_unknown_feature_gates(args))
    if refused:
        setup_logging(getattr(args, "log_level", "info"), getattr(args, "log_encoding", "json"))
    for err in refused:
        log.error(str(err), extra={"controller": getattr(args, "controller_name", "")})
    if refused:
        raise SystemExit(1)


def controller_arg_parser(
    name: str, concurrent_default: int = 4, known_feature_gates: Sequence[str] = ()
) -> argparse.ArgumentParser:
    """The flags every Flux controller has (durations parsed to seconds). A --feature-gates entry
    not in known_feature_gates stops the controller (see refuse_unavailable_flags)."""
    parser = argparse.ArgumentParser(prog=name, description=f"Tide {name}")
    parser.set_defaults(controller_name=name)
    parser.add_argument("--metrics-addr", default=":8080", help="The address the metric endpoint binds to.")
    parser.add_argument("--health-addr", default=":9440", help="The address the health endpoint binds to.")
    parser.add_argument("--events-addr", default="", help="The address of the events receiver.")
    parser.add_argument(
        "--concurrent",
        type=int,
        default=concurrent_default,
        help="The number of concurrent reconciles per kind.",
    )
    add_bool(
        parser,
        "--enable-leader-election",
        False,
        "Enable leader election for controller manager, ensuring only one active controller.",
    )
    parser.add_argument(
        "--leader-election-namespace",
        default="",
        help="The namespace of the leader election Lease (default: the runtime namespace).",
    )
    parser.add_argument("--leader-election-lease-duration", type=parse_duration_flag, default=35.0)
    parser.add_argument("--leader-election-renew-deadline", type=parse_duration_flag, default=30.0)
    parser.add_argument("--leader-election-retry-period", type=parse_duration_flag, default=5.0)
    add_bool(parser, "--leader-election-release-on-cancel", True, "Release the Lease on shutdown.")
    add_bool(
        parser,
        "--watch-all-namespaces",
        True,
        "Watch for resources in all namespaces, if set to false it will only watch the runtime namespace.",
    )
    parser.add_argument(
        "--watch-label-selector",
        default="",
        help="Watch for resources with matching labels e.g. 'sharding.fluxcd.io/key=shard1'.",
    )
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "error", "trace"])
    parser.add_argument("--log-encoding", default="json", choices=["json", "console"])
    parser.add_argument("--min-retry-delay", type=parse_duration_flag, default=0.75)
    parser.add_argument("--max-retry-delay", type=parse_duration_flag, default=900.0)
    parser.add_argument(
        "--interval-jitter-percentage",
        type=float,
        default=5.0,
        help="Percentage of jitter to apply to the interval of reconciles (0 disables).",
    )
    parser.add_argument("--kube-api-qps", type=float, default=50.0)
    parser.add_argument("--kube-api-burst", type=int, default=300)
    parser.add_argument(
        "--kubeconfig", default=None, help="Path to a kubeconfig (default: KUBECONFIG, in-cluster)."
    )
    parser.add_argument(
        "--runtime-namespace",
        default=os.environ.get("RUNTIME_NAMESPACE", ""),
        help="The namespace the controller runs in (env RUNTIME_NAMESPACE).",
    )
    parser.add_argument(
        "--graceful-shutdown-timeout",
        type=parse_duration_flag,
        default=30.0,
        help="How long in-flight reconciles may run after SIGTERM before they are cancelled.",
    )
    parser.set_defaults(unavailable_flags=(), known_feature_gates=tuple(known_feature_gates))
    parser.add_argument(
        "--feature-gates",
        default="",
        help="A comma separated list of key=value pairs; "
        + (f"known gates: {', '.join(known_feature_gates)}." if known_feature_gates else "none known."),
    )
    return parser


def runtime_namespace(args: argparse.Namespace) -> str:
    return str(getattr(args, "runtime_namespace", "") or pod_namespace() or DEFAULT_RUNTIME_NAMESPACE)


class ControllerProcess:
    """Everything one controller process runs, in start order and reverse stop order."""

    def __init__(
        self, args: argparse.Namespace, reconcilers: Sequence[Reconciler[Any]], servers: Sequence[Server] = ()
    ) -> None:
        self.args = args
        self.name: str = args.controller_name
        self.reconcilers = list(reconcilers)
        self.servers = list(servers)
        self.stopping = asyncio.Event()
        self.lost_leadership = False
        self.kube: KubeClient | None = None
        self.controllers: list[KindController] = []
        self.elector: LeaderElector | None = None
        self.health = HealthServer(args.health_addr)
        self.metrics = MetricsServer(args.metrics_addr)
        self.recorder: EventRecorder | None = None
        self._started_servers: list[Server] = []

    def request_stop(self) -> None:
        self.stopping.set()

    def _informers_synced(self) -> str | None:
        # `is not None`: an informer with an empty cache is falsy (it has a length).
        missing = [
            f"{c.info.plural}.{c.info.group}"
            for c in self.controllers
            if c.informer is not None and c.informer.missing
        ]
        if missing:
            return (
                f"CustomResourceDefinition {', '.join(missing)} not installed: "
                "run `tide install --crds-only` (or install the Helm chart charts/tide)"
            )
        waiting = [c.info.kind for c in self.controllers if c.informer is None or not c.informer.synced]
        return f"waiting for the caches of {', '.join(waiting)}" if waiting else None

    def _leadership_lost(self) -> None:
        self.lost_leadership = True
        self.stopping.set()

    async def _until_stopping(self, work: Coroutine[Any, Any, Any]) -> bool:
        """Run work until it finishes (True) or a stop is requested (False)."""
        task = asyncio.ensure_future(work)
        stopper = asyncio.ensure_future(self.stopping.wait())
        await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            stopper.cancel()
            task.result()
            return True
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return False

    async def _start_servers(self, leader_only: bool) -> None:
        for server in self.servers:
            if bool(getattr(server, "leader_only", False)) == leader_only:
                await server.start()
                self._started_servers.append(server)

    async def run(self) -> int:
        args = self.args
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self.request_stop)
        self.kube = await KubeClient.from_kubeconfig(
            args.kubeconfig, qps=args.kube_api_qps, burst=args.kube_api_burst, user_agent=self.name
        )
        hold: asyncio.Task[None] | None = None
        try:
            await self.metrics.start()
            await self.health.start()
            self.recorder = EventRecorder(self.kube, self.name, args.events_addr or None)
            await self.recorder.start()
            await self._start_servers(leader_only=False)
            log.info("starting manager", extra={"controller": self.name})
            if args.enable_leader_election:
                namespace = args.leader_election_namespace or runtime_namespace(args)
                self.elector = LeaderElector(
                    self.kube,
                    f"{self.name}-leader-election",
                    namespace,
                    lease_duration=args.leader_election_lease_duration,
                    renew_deadline=args.leader_election_renew_deadline,
                    retry_period=args.leader_election_retry_period,
                )
                if not await self._until_stopping(self.elector.acquire()):
                    return 0
                hold = loop.create_task(self.elector.hold(on_lost=self._leadership_lost))
            self.health.add_ready_check("informers", self._informers_synced)
            watch_namespace = None if args.watch_all_namespaces else runtime_namespace(args)
            for reconciler in self.reconcilers:
                controller = KindController(
                    reconciler,
                    self.kube,
                    args,
                    self.name,
                    self.recorder,
                    namespace=watch_namespace,
                    label_selector=args.watch_label_selector or None,
                    concurrent=args.concurrent,
                    jitter_percent=args.interval_jitter_percentage,
                    min_retry_delay=args.min_retry_delay,
                    max_retry_delay=args.max_retry_delay,
                )
                self.controllers.append(controller)
                log.info(
                    "starting controller",
                    extra={"controllerKind": controller.info.kind, "workers": controller.concurrent},
                )
                if not await self._until_stopping(controller.start()):
                    return 0
            await self._start_servers(leader_only=True)
            await self.stopping.wait()
            log.info("stopping and waiting for non leader election runnables")
            return 1 if self.lost_leadership else 0
        finally:
            await self._shutdown(hold)

    async def _shutdown(self, hold: asyncio.Task[None] | None) -> None:
        grace = float(self.args.graceful_shutdown_timeout)
        await asyncio.gather(*(c.stop(grace) for c in self.controllers), return_exceptions=True)
        if hold is not None:
            hold.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await hold
        for server in reversed(self._started_servers):
            try:
                await server.stop()
            except Exception:
                log.exception("server failed to stop")
        if (
            self.elector is not None
            and self.args.leader_election_release_on_cancel
            and not self.lost_leadership
        ):
            await self.elector.release()
        if self.recorder is not None:
            await self.recorder.stop()
        await self.health.stop()
        await self.metrics.stop()
        if self.kube is not None:
            await self.kube.close()
        log.info("controller stopped", extra={"controller": self.name})


async def serve(
    args: argparse.Namespace, reconcilers: Sequence[Reconciler[Any]], servers: Sequence[Server] = ()
) -> int:
    return await ControllerProcess(args, reconcilers, servers).run()


def run_controller(
    args: argparse.Namespace, reconcilers: Sequence[Reconciler[Any]], servers: Sequence[Server] = ()
) -> Any:
    """Run until SIGTERM. Called from a plain `main()` it blocks (and exits 1 when leadership is
    lost); called inside a running event loop it returns the coroutine to await."""
    setup_logging(getattr(args, "log_level", "info"), getattr(args, "log_encoding", "json"))
    refuse_unavailable_flags(args)
    use_small_tls_read_buffers()
    coro = serve(args, reconcilers, servers)
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        code = asyncio.run(coro)
        if code:
            raise SystemExit(code) from None
        return 0
    return coro
