"""The real Helm (v4 SDK through helm-python-sdk 0.2.2), one async call per verb, errors typed.

How the SDK's gaps are closed (measured against the project's control plane):

(a) storageNamespace vs targetNamespace: the SDK stores the release where it installs it. Helm is
    given a kubeconfig pointing at `apiproxy.HelmApiProxy`, which moves Helm's release-storage
    requests into the storage namespace; objects and `.Release.Namespace` stay in the target.
(b) field manager: the SDK uses argv[0]'s basename: Helm runs in a process started as
    `helm-controller` (and the proxy sets `fieldManager=helm-controller` on writes as well).
(c) timeouts vs cancellation: the SDK raises HelmCancelledError for both. Tide cancels a Helm
    context only itself (shutdown, or the hard deadline past Helm's own timeout) and records why,
    so the error becomes ReleaseCancelled or ReleaseTimeout; Helm's own timeout is ReleaseTimeout.
(d) post-renderers: Helm v4 runs them only as postrenderer/v1 plugins found under HELM_PLUGINS,
    read once when the library loads; Helm's process starts with Tide's `tide-postrender` plugin
    (postrender.py) there, and each install/upgrade passes it a spec file for its release (with
    the kustomize binary its kustomize post-renderers run, found here once per call). The plugin
    relays to a post-render server the engine runs beside it (postrender_server.py).

Helm's Go runtime takes its environment and argv[0] from the process's start, which fixes (b) and
lets (d) install the plugin. `tide-helm-controller` starts itself again so (start.py) and runs
Helm's calls in its own threads (HelmInThreads: the SDK releases the GIL, the event loop only
waits); any other process, a test driving the engine, runs them in a worker process started so
(HelmWorkerProcess), whose death fails its calls with EngineCrashed (retryable) and which is
started again. Measured at 100 releases, one process instead of two is 6 MiB less at the peak.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import shutil
import sys
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar

from tide.controllers.helm.apiproxy import LOCAL_ROUTE, HelmApiProxy
from tide.controllers.helm.engine_worker import Worker
from tide.controllers.helm.postrender import PostRenderSpec, error_file
from tide.controllers.helm.sdk import (
    POST_RENDERER,
    WORKER_ARGV0,
    WORKER_BOOTSTRAP,
    helm_host_home,
    postrender_server_command,
    postrender_socket,
    worker_environment,
)
from tide.shared.kube.config import Connection
from tide.shared.kube.targets import Target as KubeTarget
from tide.shared.kustomize.build import KustomizeNotFound, find_kustomize

DEADLINE_GRACE = 30.0
"""Seconds past Helm's own timeout before Tide cancels the call itself."""


# --- typed errors ---------------------------------------------------------------------------------


class EngineError(Exception):
    """A Helm action failed; `retryable` says whether the same call may succeed later."""

    retryable: ClassVar[bool] = True


class ReleaseFailed(EngineError):
    """Helm ran the action and it failed (a hook, an apply, a wait): remediation territory."""


class ReleaseTimeout(ReleaseFailed):
    """Helm's timeout (or Tide's hard deadline) passed before the action finished."""


class ReleaseCancelled(EngineError):
    """Tide cancelled the action (shutdown)."""


class ReleaseNotFound(EngineError):
    """No such release or revision in storage."""

    retryable = False


class ChartInvalid(EngineError):
    """The chart does not load or render with these values: a new chart or values is needed."""

    retryable = False


class ValuesInvalid(ChartInvalid):
    """The values are malformed or fail the chart's schema."""


class ClusterUnreachable(EngineError):
    """The API server could not be reached."""


class StorageFailure(EngineError):
    """Helm's release storage failed (another operation in progress included)."""


class PostRendererUnavailable(EngineError):
    """The kustomize post-renderers need the kustomize binary, which this installation lacks."""

    retryable = False


class EngineMisuse(EngineError):
    """Tide passed Helm something it refuses (a bug, or an option this SDK lacks)."""

    retryable = False


# --- what each verb takes -------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """Which release: its name, where its objects go, where Helm stores it."""

    name: str
    namespace: str
    storage_namespace: str
    route: str = LOCAL_ROUTE
    """The API proxy's route: which cluster Helm talks to, as which ServiceAccount (see route())."""
    origin: tuple[str, str] | None = None
    """The HelmRelease (namespace, name) whose origin labels the release's objects carry: Helm's
    waits read only those (apiproxy.rewrite)."""


@dataclass(frozen=True)
class ReleaseOptions:
    """What install and upgrade share (native option names)."""

    timeout_seconds: int = 300
    wait: str = "watcher"
    wait_for_jobs: bool = True
    skip_crds: bool = True
    """CRDs are applied by the controller (spec.install.crds / upgrade.crds), as Flux does."""
    disable_hooks: bool = False
    force_conflicts: bool = True
    take_ownership: bool = True
    force_replace: bool = False
    disable_openapi_validation: bool = False
    skip_schema_validation: bool = False
    description: str | None = None
    post_render_strategy: str | None = None
    """Which manifests the post-renderer gets: combined (Helm 4's default), separate or nohooks."""


@dataclass(frozen=True)
class InstallOptions(ReleaseOptions):
    server_side_apply: bool = True
    create_namespace: bool = False


@dataclass(frozen=True)
class UpgradeOptions(ReleaseOptions):
    server_side_apply: str = "true"
    """true, false or auto (Flux's enabled, disabled, auto)."""
    reset_values: bool = True
    reuse_values: bool = False
    cleanup_on_fail: bool = False
    max_history: int = 5


@dataclass(frozen=True)
class RollbackOptions:
    version: int | None = None
    timeout_seconds: int = 300
    wait: str = "watcher"
    wait_for_jobs: bool = True
    disable_hooks: bool = False
    server_side_apply: str = "auto"
    force_conflicts: bool = True
    force_replace: bool = False
    cleanup_on_fail: bool = False
    max_history: int = 5


@dataclass(frozen=True)
class UninstallOptions:
    timeout_seconds: int = 300
    wait: str = "watcher"
    disable_hooks: bool = False
    keep_history: bool = False
    deletion_propagation: str = "background"
    ignore_not_found: bool = True
    description: str | None = None


@dataclass(frozen=True)
class TestOptions:
    timeout_seconds: int = 300
    include_names: list[str] = field(default_factory=list)
    exclude_names: list[str] = field(default_factory=list)


def native(options: Any) -> dict[str, Any]:
    """The options as the SDK's native call takes them: unset and false values left out."""
    return {k: v for k, v in asdict(options).items() if v not in (None, False, [], "")}


# --- the engine ---------------------------------------------------------------------------------

_SDK_ERRORS: dict[str, type[EngineError]] = {
    "HelmNotFoundError": ReleaseNotFound,
    "HelmValuesError": ValuesInvalid,
    "HelmChartLoadError": ChartInvalid,
    "HelmChartInvalidError": ChartInvalid,
    "HelmRenderError": ChartInvalid,
    "HelmKubeError": ClusterUnreachable,
    "HelmStorageError": StorageFailure,
    "HelmInvalidArgError": EngineMisuse,
    "HelmReleaseError": ReleaseFailed,
}


def classify(error_type: str, message: str, cancelled_because: str | None) -> EngineError:
    """The typed error for an SDK error; `cancelled_because` is why Tide cancelled the call, if it did."""
    if error_type == "HelmCancelledError" or "context deadline exceeded" in message:
        if cancelled_because == "shutdown":
            return ReleaseCancelled(message)
        return ReleaseTimeout(message)
    return _SDK_ERRORS.get(error_type, EngineError)(message)


class EngineCrashed(EngineError):
    """The Helm worker process died mid-call; the release may be left pending (then unlocked)."""


Reply = Callable[[dict[str, Any]], None]
"""Where a call's answer goes: `{"id", "result"}` or `{"id", "error": {"type", "message"}}`."""


class HelmInThreads:
    """Helm's calls in this process's threads: it was started as `helm-controller`
    (sdk.helm_host_home), so Helm's field manager and plugins are right here. The SDK is loaded on
    `ready`; a call's answer comes back to the event loop from the thread that ran it."""

    pid: int | None = None

    def __init__(self, answer: Reply, concurrency: int) -> None:
        self._answer = answer
        self._concurrency = concurrency
        self._worker: Worker | None = None

    async def ready(self) -> None:
        if self._worker is None:
            loop = asyncio.get_running_loop()

            def reply(message: dict[str, Any]) -> None:
                loop.call_soon_threadsafe(self._answer, message)

            # Loading the SDK (85 MB of Go) takes a moment: not on the event loop.
            self._worker = await asyncio.to_thread(Worker, reply, self._concurrency)

    def send(self, request: dict[str, Any]) -> None:
        assert self._worker is not None
        self._worker.submit(request)

    def cancel(self, rid: int) -> None:
        if self._worker is not None:
            self._worker.cancel(rid)

    async def close(self) -> None:
        """Cancel what runs and wait for it, at most 30 s as for a worker process (a call that has
        not answered by then still ends at its own deadline)."""
        if self._worker is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.to_thread(self._worker.stop), 30)


class HelmWorkerProcess:
    """Helm's calls in a worker process started as `helm-controller` (engine_worker.py), for a
    process that was not: JSON lines on its stdin and stdout. A worker that dies fails its calls
    (`lost`) and is started again by the next `ready`."""

    def __init__(
        self, answer: Reply, lost: Callable[[int | None], None], concurrency: int, home: Path
    ) -> None:
        self._answer = answer
        self._lost = lost
        self._concurrency = concurrency
        self._home = home
        self._worker: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int | None:
        worker = self._worker
        return worker.pid if worker is not None and worker.returncode is None else None

    async def ready(self) -> None:
        if self._worker is not None and self._worker.returncode is None:
            return
        env = worker_environment(self._home, self._concurrency)
        env["TIDE_HELM_CONCURRENCY"] = str(self._concurrency)
        self._worker = await asyncio.create_subprocess_exec(
            WORKER_ARGV0,
            "-c",
            WORKER_BOOTSTRAP,
            executable=sys.executable,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env=env,
            limit=256 * 1024 * 1024,
        )
        self._reader = asyncio.create_task(self._read(self._worker))

    async def _read(self, worker: asyncio.subprocess.Process) -> None:
        assert worker.stdout is not None
        async for line in worker.stdout:
            self._answer(json.loads(line))
        await worker.wait()
        self._lost(worker.returncode)

    def _write(self, message: dict[str, Any]) -> None:
        worker = self._worker
        if (
            worker is not None
            and worker.returncode is None
            and worker.stdin is not None
            and not worker.stdin.is_closing()
        ):
            worker.stdin.write((json.dumps(message) + "\n").encode())

    def send(self, request: dict[str, Any]) -> None:
        self._write(request)

    def cancel(self, rid: int) -> None:
        self._write({"id": rid, "cancel": True})

    async def close(self) -> None:
        """Stop the worker: it cancels what runs (Helm marks those releases failed) and exits."""
        worker = self._worker
        if worker is not None and worker.returncode is None:
            assert worker.stdin is not None
            worker.stdin.close()
            try:
                await asyncio.wait_for(worker.wait(), 30)
            except TimeoutError:
                worker.kill()
                await worker.wait()
        if self._reader is not None:
            await self._reader


class HelmEngine:
    """Helm verbs, in this process's threads or in a worker process (see the module's docstring),
    through the loopback API proxy."""

    def __init__(self, connection: Connection, concurrency: int = 4) -> None:
        self.proxy = HelmApiProxy(connection)
        self.concurrency = concurrency
        self._pending: dict[int, asyncio.Future[Any]] = {}
        host_home = helm_host_home()
        self._home = host_home or Path(tempfile.mkdtemp(prefix="tide-helm-"))
        self._helm: HelmInThreads | HelmWorkerProcess = (
            HelmInThreads(self._answered, concurrency)
            if host_home is not None
            else HelmWorkerProcess(self._answered, self._worker_lost, concurrency, self._home)
        )
        self._postrender: asyncio.subprocess.Process | None = None
        self._ids = itertools.count(1)
        self._start_lock = asyncio.Lock()
        self._closing = False

    async def start(self) -> None:
        await self.proxy.start()
        await self._ready()

    def route(self, target: KubeTarget) -> str:
        """The route for Helm to act as a shared.kube.targets Target does (its cluster, its
        impersonated ServiceAccount): what Target.route takes. On this cluster the proxy's own
        connection carries it."""
        connection = target.client.connection if target.remote is not None else self.proxy.connection
        return self.proxy.route(target.slot, connection, target.client.impersonating)

    @property
    def worker_pid(self) -> int | None:
        """The Helm worker process's id, while it runs (None when Helm runs in this process)."""
        return self._helm.pid

    async def _ensure_postrender_server(self) -> None:
        """The post-render fork server (postrender_server.py), started again if it died; until it
        listens, the plugin renders by itself."""
        server = self._postrender
        if server is not None and server.returncode is None:
            return
        postrender_socket(self._home).unlink(missing_ok=True)
        self._postrender = await asyncio.create_subprocess_exec(
            *postrender_server_command(self._home), stdin=asyncio.subprocess.PIPE
        )

    async def _ready(self) -> None:
        async with self._start_lock:
            if not self._closing:
                await self._ensure_postrender_server()
            await self._helm.ready()

    def _answered(self, message: dict[str, Any]) -> None:
        future = self._pending.pop(message["id"], None)
        if future is not None and not future.done():
            future.set_result(message)

    def _fail_pending(self, error: EngineError) -> None:
        for future in self._pending.values():
            if not future.done():
                future.set_exception(error)
        self._pending.clear()

    def _worker_lost(self, returncode: int | None) -> None:
        self._fail_pending(EngineCrashed(f"the Helm worker exited ({returncode})"))

    async def close(self) -> None:
        """Stop Helm: what runs is cancelled (Helm marks those releases failed)."""
        self._closing = True
        await self._helm.close()
        self._fail_pending(ReleaseCancelled("the helm controller is stopping"))
        server = self._postrender
        if server is not None and server.returncode is None:
            assert server.stdin is not None
            server.stdin.close()  # it exits at the end of its stdin
            try:
                await asyncio.wait_for(server.wait(), 10)
            except TimeoutError:
                server.kill()
                await server.wait()
        await self.proxy.close()
        shutil.rmtree(self._home, ignore_errors=True)

    async def _call(self, verb: str, target: Target, args: dict[str, Any], deadline: float) -> Any:
        """One SDK call; cancelled in Helm past `deadline` or when this task is cancelled."""
        await self._ready()
        rid = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[rid] = future
        kubeconfig = self.proxy.kubeconfig(
            target.storage_namespace, target.namespace, target.route, target.origin
        )
        config = {
            "kubeconfig_content": kubeconfig,
            "namespace": target.namespace,
            "burst_limit": 300,
            "qps": 50.0,
        }
        self._helm.send(
            {"id": rid, "verb": verb, "config": {k: v for k, v in config.items() if v}, "args": args}
        )
        why: str | None = None
        try:
            try:
                message = await asyncio.wait_for(asyncio.shield(future), deadline)
            except TimeoutError:
                why = "deadline"
                self._helm.cancel(rid)
                message = await future
        except asyncio.CancelledError:
            self._helm.cancel(rid)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(future), DEADLINE_GRACE)
            raise
        finally:
            self._pending.pop(rid, None)
        if "error" in message:
            error = message["error"]
            raise classify(error["type"], error["message"], why or ("shutdown" if self._closing else None))
        return message.get("result")

    def _post_render_args(self, target: Target, spec: PostRenderSpec | None) -> dict[str, Any]:
        # Always post-render: Flux's origin labels go on every release, and the plugin refuses
        # charts that forge release-storage Secrets (see apiproxy).
        spec = spec or PostRenderSpec(name=target.name, namespace=target.namespace)
        if spec.kustomize and not spec.kustomize_binary:
            try:
                spec = replace(spec, kustomize_binary=find_kustomize())
            except KustomizeNotFound as err:
                raise PostRendererUnavailable(str(err)) from err
        path = self._home / "postrender" / f"{target.storage_namespace}.{target.name}.json"
        path.parent.mkdir(exist_ok=True)
        path.write_text(spec.to_json())
        error_file(str(path)).unlink(missing_ok=True)
        return {"post_renderer": POST_RENDERER, "post_renderer_args": [str(path)]}

    async def _release_call(self, verb: str, target: Target, args: dict[str, Any], deadline: float) -> Any:
        """An install or upgrade; a failed post-render says why (Helm drops the plugin's stderr)."""
        try:
            return await self._call(verb, target, args, deadline)
        except EngineError as err:
            why = error_file(args["options"]["post_renderer_args"][0])
            if why.is_file():
                raise type(err)(f"{err}: {why.read_text().strip()}") from err
            raise

    def _validation(self, target: Target, options: Any) -> Any:
        """The options with Helm's client-side OpenAPI check left out where it would validate
        nothing: Helm reads each kind's whole OpenAPI group document to learn whether the API server
        validates fields itself and, when it does, skips its own validation. On a cluster where every
        kind is validated by the server (discovery_cache), the outcome is known without the reads."""
        if options.disable_openapi_validation or not self.proxy.server_validates_fields(target.route):
            return options
        return replace(options, disable_openapi_validation=True)

    @staticmethod
    def _deadline(timeout_seconds: int) -> float:
        return timeout_seconds + DEADLINE_GRACE

    async def install(
        self,
        target: Target,
        chart_path: str,
        values: dict[str, Any],
        options: InstallOptions,
        post_render: PostRenderSpec | None = None,
    ) -> dict[str, Any]:
        """`helm install`: returns the SDK's release summary (with the manifest)."""
        opts = {
            "namespace": target.namespace,
            **native(self._validation(target, options)),
            **self._post_render_args(target, post_render),
        }
        args = {"chart": chart_path, "name": target.name, "values": values, "options": opts}
        result: dict[str, Any] = await self._release_call(
            "helm_install", target, args, self._deadline(options.timeout_seconds)
        )
        return result

    async def upgrade(
        self,
        target: Target,
        chart_path: str,
        values: dict[str, Any],
        options: UpgradeOptions,
        post_render: PostRenderSpec | None = None,
    ) -> dict[str, Any]:
        """`helm upgrade` of an existing release (its namespace is the stored release's)."""
        opts = {**native(self._validation(target, options)), **self._post_render_args(target, post_render)}
        args = {"chart": chart_path, "name": target.name, "values": values, "options": opts}
        result: dict[str, Any] = await self._release_call(
            "helm_upgrade", target, args, self._deadline(options.timeout_seconds)
        )
        return result

    async def rollback(self, target: Target, options: RollbackOptions) -> None:
        args = {"name": target.name, "options": native(options)}
        await self._call("helm_rollback", target, args, self._deadline(options.timeout_seconds))

    async def uninstall(self, target: Target, options: UninstallOptions) -> dict[str, Any]:
        args = {"name": target.name, "options": native(options)}
        result: dict[str, Any] = await self._call(
            "helm_uninstall", target, args, self._deadline(options.timeout_seconds)
        )
        return result

    async def test(self, target: Target, options: TestOptions) -> dict[str, Any]:
        """`helm test`: a failing test raises ReleaseFailed; the release records the hooks' phases."""
        args = {"name": target.name, "options": native(options)}
        result: dict[str, Any] = await self._call(
            "helm_test_run", target, args, self._deadline(options.timeout_seconds)
        )
        return result

    async def history(self, target: Target) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = await self._call("helm_history", target, {"name": target.name}, 60.0)
        return result

    async def status(self, target: Target) -> dict[str, Any]:
        result: dict[str, Any] = await self._call("helm_status", target, {"name": target.name}, 60.0)
        return result

    async def chart_crds(self, target: Target, chart_path: str) -> list[dict[str, str]]:
        """The files under the chart's crds/ and its subcharts' (`name`, `filename`, `data`)."""
        result: list[dict[str, str]] = await self._call("chart_crds", target, {"chart": chart_path}, 60.0)
        return result or []

    async def render(self, target: Target, chart_path: str, values: dict[str, Any]) -> dict[str, str]:
        """The chart's templates rendered for this release (lookup reads the cluster), nothing stored."""
        args = {"chart": chart_path, "name": target.name, "namespace": target.namespace, "values": values}
        result: dict[str, str] = await self._call("render", target, args, 60.0)
        return result
