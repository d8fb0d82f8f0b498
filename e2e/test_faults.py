"""Faults survived, nothing lost: the real controllers, as processes, against a control plane of this
module's own (the faults break it: restarts, compaction, latency), never the session's.

After every fault the same checks ("nothing lost"): each object of the final build exists with the
desired data, nothing outside the build was pruned, the inventory names exactly the objects that
carry the Kustomization's owner labels, and the status says what is true. Where the controller is
stopped mid-way (SIGKILL, SIGTERM) the same is checked on the frozen state, while nothing moves.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import re
import signal
import threading
import time
import urllib.error
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from e2e.cluster import ControlPlane, free_port
from e2e.fixtures.cluster import CRDS, run_kubectl
from e2e.fixtures.controllers import ControllerProcess
from e2e.fixtures.leaks import SCAN

pytestmark = pytest.mark.e2e

KS_API = "/apis/kustomize.toolkit.fluxcd.io/v1"
GIT_API = "/apis/source.toolkit.fluxcd.io/v1"
NAME_LABEL = "kustomize.toolkit.fluxcd.io/name"
NAMESPACE_LABEL = "kustomize.toolkit.fluxcd.io/namespace"


# --- the module's control plane ------------------------------------------------------------------


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    state = tmp_path_factory.mktemp("fault-plane")
    own = ControlPlane(state=state, kubeconfig=state / "kubeconfig", tie_to_parent=True)
    own.up()
    try:
        run_kubectl(own.kubeconfig, "apply", "--server-side", "-f", str(CRDS))
        run_kubectl(own.kubeconfig, "wait", "--for=condition=Established", "--timeout=60s", "crd", "--all")
        yield own
    finally:
        own.down()


SHARED_SOURCE = "faults.tide.test/source"


@dataclass
class SharedSource:
    """One source controller for the module (the plane is private, so it may watch every
    namespace): its first fetch waits for its build worker to start, which each test would pay
    again with a controller of its own. It serves the GitRepositories labelled SHARED_SOURCE."""

    process: ControllerProcess
    storage: str


@pytest.fixture(scope="module")
def shared_source(plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SharedSource]:
    tmp = tmp_path_factory.mktemp("fault-source")
    storage = f"127.0.0.1:{free_port()}"
    args = [f"--kubeconfig={plane.kubeconfig}", "--watch-all-namespaces=true",
            f"--watch-label-selector={SHARED_SOURCE}=true", f"--storage-path={tmp / 'storage'}",
            f"--storage-addr={storage}", f"--storage-adv-addr={storage}"]  # fmt: skip
    process = ControllerProcess("source", args, tmp / "source-controller.log")
    SCAN.logs.append(("e2e/test_faults.py", process.log_path))
    process.start()
    try:
        yield SharedSource(process, storage)
    finally:
        process.stop()


def wait_until(check: Callable[[], Any], timeout: float, what: str, poll: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        assert time.monotonic() < deadline, f"timed out after {timeout:.0f}s waiting for {what}"
        time.sleep(poll)


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any]:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("type") == type_:
            return dict(c)
    return {}


def manifests(revision: str, indexes: Iterable[int]) -> dict[str, str]:
    """The build: one ConfigMap per index, its data naming the revision it belongs to."""
    docs = [
        f'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-{i:03d}\ndata:\n  rev: "{revision}"\n'
        for i in indexes
    ]
    return {"app/configmaps.yaml": "---\n".join(docs)}


@dataclass
class Fault:
    """One test's namespace on the module's plane, its Git repository and its controllers."""

    plane: ControlPlane
    namespace: str
    tmp: Path
    repo: Any
    nodeid: str
    storage: str  # the source controller's storage address
    own_source: bool = False  # a source controller of the test's own, not the module's
    processes: list[ControllerProcess] = field(default_factory=list)
    builds: dict[str, dict[str, str]] = field(default_factory=dict)  # Flux revision -> {name: data.rev}
    order: list[int] = field(default_factory=list)  # the last pushed build's objects, in apply order

    # API access (stdlib, through the plane's admin certificate) ---------------------------------
    def get(self, path: str) -> dict[str, Any] | None:
        try:
            return self.plane.request("GET", path, timeout=10)
        except urllib.error.HTTPError as err:
            if err.code == 404:
                return None
            raise

    def kubectl(self, *args: str, input: str | None = None) -> str:
        return run_kubectl(self.plane.kubeconfig, "-n", self.namespace, *args, input=input).stdout

    def kustomization(self) -> dict[str, Any]:
        return self.get(f"{KS_API}/namespaces/{self.namespace}/kustomizations/app") or {}

    def configmaps(self) -> dict[str, dict[str, Any]]:
        got = self.get(f"/api/v1/namespaces/{self.namespace}/configmaps") or {}
        return {cm["metadata"]["name"]: cm for cm in got.get("items") or []}

    def annotate_now(self, kind: str, name: str) -> None:
        self.kubectl("annotate", "--overwrite", kind, name, f"reconcile.fluxcd.io/requestedAt={time.time()}")

    # the story ----------------------------------------------------------------------------------
    def push(self, revision: str, indexes: Iterable[int]) -> str:
        """Commit a build, its objects in a random order (the apply order); returns its Flux revision
        (main@sha1:...)."""
        indexes = list(indexes)
        random.shuffle(indexes)
        self.order = indexes
        sha = self.repo.commit(manifests(revision, indexes), f"revision {revision}")
        rev = f"main@sha1:{sha}"
        self.builds[rev] = {f"cm-{i:03d}": revision for i in indexes}
        return rev

    def create_objects(self, **ks_spec: Any) -> None:
        labels = {} if self.own_source else {SHARED_SOURCE: "true"}
        git = {
            "apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository",
            "metadata": {"name": "repo", "labels": labels},
            "spec": {"url": self.repo.public_http_url, "interval": "10m", "ref": {"branch": "main"},
                     "timeout": "20s"},
        }  # fmt: skip
        spec = {
            "interval": "10m", "retryInterval": "2s", "path": "./app", "prune": True, "timeout": "60s",
            "targetNamespace": self.namespace, "sourceRef": {"kind": "GitRepository", "name": "repo"},
            **ks_spec,
        }  # fmt: skip
        ks = {"apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
              "metadata": {"name": "app"}, "spec": spec}  # fmt: skip
        # Outside the build and unlabelled: prune must never touch it.
        bystander = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "bystander"},
                     "data": {"keep": "me"}}  # fmt: skip
        items = {"apiVersion": "v1", "kind": "List", "items": [git, ks, bystander]}
        self.kubectl("apply", "-f", "-", input=json.dumps(items))

    def _controller(self, name: str, kubeconfig: Path, args: list[str]) -> ControllerProcess:
        log = self.tmp / f"{name}-controller-{len(self.processes)}.log"
        SCAN.logs.append((self.nodeid, log))
        common = [f"--kubeconfig={kubeconfig}", "--watch-all-namespaces=false",
                  f"--runtime-namespace={self.namespace}"]  # fmt: skip
        process = ControllerProcess(name, [*common, *args], log)
        self.processes.append(process)
        return process

    def source(self, kubeconfig: Path | None = None) -> ControllerProcess:
        """A source controller of the test's own (it must be the one serving: own_source)."""
        assert self.own_source
        return self._controller(
            "source", kubeconfig or self.plane.kubeconfig,
            [f"--storage-path={self.tmp / 'storage'}", f"--storage-addr={self.storage}",
             f"--storage-adv-addr={self.storage}"],
        )  # fmt: skip

    def kustomize(self, *extra: str, kubeconfig: Path | None = None) -> ControllerProcess:
        return self._controller(
            "kustomize", kubeconfig or self.plane.kubeconfig,
            [f"--source-storage-addr={self.storage}", "--max-retry-delay=5s", "--kube-api-qps=500",
             "--kube-api-burst=1000", *extra],
        )  # fmt: skip

    def stop_all(self) -> None:
        for process in self.processes:
            process.stop(signal.SIGKILL)

    def patch_kustomization(self, spec: dict[str, Any]) -> None:
        self.kubectl("patch", "kustomization", "app", "--type=merge", "-p", json.dumps({"spec": spec}))

    def wait_artifact(self, revision: str) -> None:
        def served() -> bool:
            repo = self.get(f"{GIT_API}/namespaces/{self.namespace}/gitrepositories/repo") or {}
            return ((repo.get("status") or {}).get("artifact") or {}).get("revision") == revision

        wait_until(served, 60, f"the artifact of {revision}")

    def wait_applying(self, name: str, rev: str, poll: float = 0.2) -> None:
        """Until the apply of a revision has reached one of its objects."""
        path = f"/api/v1/namespaces/{self.namespace}/configmaps/{name}"
        got = lambda: (self.get(path) or {}).get("data", {}).get("rev") == rev  # noqa: E731
        wait_until(got, 60, f"{name} at {rev}", poll)

    # checks --------------------------------------------------------------------------------------
    def inventory(self, ks: dict[str, Any]) -> set[str]:
        entries = ((ks.get("status") or {}).get("inventory") or {}).get("entries") or []
        names = set()
        for entry in entries:
            namespace, name, _group, kind = entry["id"].split("_")
            assert (namespace, kind) == (self.namespace, "ConfigMap"), entry
            names.add(name)
        return names

    def owned(self, cms: dict[str, dict[str, Any]]) -> set[str]:
        def ours(cm: dict[str, Any]) -> bool:
            labels = cm["metadata"].get("labels") or {}
            return labels.get(NAME_LABEL) == "app" and labels.get(NAMESPACE_LABEL) == self.namespace

        return {name for name, cm in cms.items() if ours(cm)}

    def ready(self, revision: str) -> bool:
        ks = self.kustomization()
        status = ks.get("status") or {}
        return (
            condition(ks, "Ready").get("status") == "True"
            and status.get("lastAppliedRevision") == revision
            and status.get("observedGeneration") == ks["metadata"]["generation"]
        )

    def wait_ready(self, revision: str, timeout: float = 90) -> None:
        try:
            wait_until(lambda: self.ready(revision), timeout, f"Kustomization Ready at {revision}")
        except AssertionError:
            status = json.dumps(self.kustomization().get("status"), indent=1)[-3000:]
            logs = "\n".join(f"--- {p.name} ---\n{p.log()[-4000:]}" for p in self.processes)
            raise AssertionError(f"not Ready at {revision}:\n{status}\n{logs}") from None

    def not_applied(self, revision: str, cms: dict[str, dict[str, Any]]) -> set[str]:
        """Objects of the revision's build missing from the cluster or without its data."""
        want = self.builds[revision]
        return {n for n, rev in want.items() if cms.get(n, {}).get("data", {}).get("rev") != rev}

    def assert_consistent(self) -> None:
        """What must hold at any moment the controller stands still: every object carrying our owner
        labels is in the inventory (nothing orphaned), the bystander is there, and Ready=True only
        with every object of the applied revision in place with that revision's data."""
        ks = self.kustomization()
        cms = self.configmaps()
        orphans = self.owned(cms) - self.inventory(ks)
        assert not orphans, f"applied but not in the inventory: {sorted(orphans)}"
        assert "bystander" in cms, "an object outside the build was pruned"
        status = ks.get("status") or {}
        if condition(ks, "Ready").get("status") == "True":
            revision = status["lastAppliedRevision"]
            missing = self.not_applied(revision, cms)
            assert not missing, f"Ready=True at {revision} but not applied: {sorted(missing)[:10]}"

    def assert_nothing_lost(self, revision: str) -> None:
        assert self.ready(revision), json.dumps(self.kustomization().get("status"), indent=1)
        ks, cms = self.kustomization(), self.configmaps()
        want = set(self.builds[revision])
        wrong = self.not_applied(revision, cms)
        assert not wrong, f"objects of the build missing or not as desired: {sorted(wrong)[:10]}"
        assert cms["bystander"]["data"] == {"keep": "me"}, "an object outside the build was pruned"
        assert self.inventory(ks) == want, "the inventory is not the build"
        assert self.owned(cms) == want, "the cluster's owned objects are not the inventory"
        assert condition(ks, "Reconciling") == {}, "still Reconciling after Ready"


def make_fault(plane: ControlPlane, git_server: Any, tmp_path: Path, request: pytest.FixtureRequest,
               storage: str, own_source: bool) -> Iterator[Fault]:  # fmt: skip
    base = "".join(c for c in request.node.name.lower().replace("_", "-") if c.isalnum() or c == "-")
    namespace = f"{base[5:35].strip('-')}-{random.randrange(16**6):06x}"
    run_kubectl(plane.kubeconfig, "create", "namespace", namespace)
    repo = git_server.create_repo(f"faults-{namespace}")
    state = Fault(plane, namespace, tmp_path, repo, request.node.nodeid, storage, own_source)
    try:
        yield state
    finally:
        state.stop_all()
        failed = getattr(request.node, "rep_call", None)
        if failed is not None and failed.failed:
            for process in state.processes:
                print(f"--- {process.name} controller log ---\n{process.log()[-6000:]}")


@pytest.fixture
def fault(
    plane: ControlPlane, shared_source: SharedSource, git_server: Any, tmp_path: Path,
    request: pytest.FixtureRequest,
) -> Iterator[Fault]:  # fmt: skip
    """A test's namespace and repository, served by the module's source controller."""
    yield from make_fault(plane, git_server, tmp_path, request, shared_source.storage, False)


@pytest.fixture
def fault_own_source(
    plane: ControlPlane, git_server: Any, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Fault]:
    """A test's namespace and repository, for a source controller the test starts (and kills)."""
    yield from make_fault(plane, git_server, tmp_path, request, f"127.0.0.1:{free_port()}", True)


# --- faults ----------------------------------------------------------------------------------------


def test_api_server_restarted_while_applying_500_objects(fault: Fault) -> None:
    """kube-apiserver restarted in the middle of applying 500 ConfigMaps: the controller retries with
    backoff, converges after the restart, and prunes only what left the build."""
    first = fault.push("1", range(500))
    fault.create_objects()
    kustomize = fault.kustomize().start()
    fault.wait_ready(first, timeout=120)

    # Revision 2 changes 490 objects and drops the last 10: the restart lands among the writes.
    second = fault.push("2", range(490))
    fault.annotate_now("gitrepository", "repo")
    fault.wait_applying(f"cm-{fault.order[0]:03d}", "2", poll=0.02)
    fault.plane.restart_apiserver(signal.SIGKILL)
    fault.wait_ready(second, timeout=90)
    fault.assert_nothing_lost(second)
    # The restart lands among the writes of the apply stage or, on a quick machine, of the prune.
    said = kustomize.log()
    assert "cannot reach the API server" in said or "could not be reached" in said, "restart missed"
    assert kustomize.proc and kustomize.proc.poll() is None


def test_etcd_restarted_and_watches_expired(fault: Fault) -> None:
    """etcd restarted during an apply: the controller retries and converges. Then the watches
    expire (410 Gone: etcd compacted past them while the controller was frozen, the API server
    restarted so no watch can resume from before the compaction): the informers relist, and the
    changes made in the gap (a new source revision, an applied object deleted) are not missed."""
    first = fault.push("1", range(200))
    fault.create_objects()
    kustomize = fault.kustomize().start()
    fault.wait_ready(first)

    second = fault.push("2", range(200))
    fault.annotate_now("gitrepository", "repo")
    fault.wait_applying(f"cm-{fault.order[0]:03d}", "2", poll=0.02)
    fault.plane.restart_etcd(signal.SIGKILL)
    fault.wait_ready(second)
    fault.assert_nothing_lost(second)

    assert kustomize.proc is not None
    buckets = f"/apis/source.toolkit.fluxcd.io/v1/namespaces/{fault.namespace}/buckets"
    stale = fault.plane.request("GET", buckets)["metadata"]["resourceVersion"]
    kustomize.proc.send_signal(signal.SIGSTOP)
    try:
        third = fault.push("3", range(200))
        fault.annotate_now("gitrepository", "repo")
        fault.wait_artifact(third)
        fault.kubectl("delete", "configmap", "cm-005")
        fault.plane.compact_etcd()
        fault.plane.restart_apiserver(signal.SIGKILL)
        # What a watch resumed from before the gap is answered now (the controller's Bucket
        # informer, with no Bucket to see, holds a version at least that old).
        resumed = watch_answer(fault.plane, buckets, stale)
    finally:
        kustomize.proc.send_signal(signal.SIGCONT)
    fault.wait_ready(third)
    fault.assert_nothing_lost(third)
    if expired(resumed):
        # The API server refuses a watch from before the gap: the informers relist. Not always
        # before the Kustomization is Ready: the events sent before the API server died may still
        # be read from the connection, and the informers retry after a backoff.
        def relisted() -> bool:
            return "expired (410 Gone), relisting" in kustomize.log()

        try:
            wait_until(relisted, 30, "the informers' relist after 410 Gone")
        except AssertionError:
            informer = [line for line in kustomize.log().splitlines() if "tide.kube.informer" in line]
            raise AssertionError((resumed, informer)) from None


def expired(answer: str) -> bool:
    """Whether a watch answer (watch_answer) is the API server's 410 Gone."""
    return answer == "HTTP 410" or re.search(r"code\W*410\b", answer) is not None


def watch_answer(plane: ControlPlane, path: str, version: str) -> str:
    """The first thing the API server answers to a watch from resourceVersion `version`."""
    query = f"?watch=1&resourceVersion={version}&timeoutSeconds=1"
    try:
        return json.dumps(plane.request("GET", path + query, timeout=15))[:500]
    except urllib.error.HTTPError as err:
        return f"HTTP {err.code}"


def test_kustomize_controller_killed_at_random_points(fault: Fault) -> None:
    """SIGKILL at a random point of each of several applies, each of a new revision that creates,
    changes and prunes objects: whenever the controller lies dead the inventory names every object
    it applied, and Ready=True only with the applied revision in place; prune never deleted an
    object that stayed in every build; the run after the last kill converges."""
    builds = [range(k * 40, 200 + k * 40) for k in range(4)]  # 120..199 are in every build
    revision = fault.push("0", builds[0])
    fault.create_objects()
    fault.kustomize().start()
    fault.wait_ready(revision)
    stay = {f"cm-{i:03d}" for i in range(120, 200)}
    uids = {n: cm["metadata"]["uid"] for n, cm in fault.configmaps().items() if n in stay}
    fault.processes[-1].stop(signal.SIGKILL)

    rng = random.Random()
    for number, indexes in enumerate(builds[1:], start=1):
        revision = fault.push(str(number), indexes)
        fault.annotate_now("gitrepository", "repo")
        fault.wait_artifact(revision)
        controller = fault.kustomize().start()
        fault.wait_applying(f"cm-{rng.choice(fault.order[20:150]):03d}", str(number), poll=0.02)
        controller.stop(signal.SIGKILL)
        fault.assert_consistent()

    fault.kustomize().start()
    fault.wait_ready(revision)
    fault.assert_nothing_lost(revision)
    now = fault.configmaps()
    assert {n: now[n]["metadata"]["uid"] for n in stay} == uids, "prune deleted an object of the build"


def test_graceful_sigterm_during_apply(fault: Fault) -> None:
    """SIGTERM while applying (a rate limit makes the apply outlast the 1s shutdown timeout): the
    process exits on its own within the timeout, the abandoned apply leaves nothing orphaned and no
    Ready claiming its revision; the next start converges. (An idle controller stops as cleanly.)"""
    first = fault.push("1", range(60))
    fault.create_objects()
    idle = fault.kustomize().start()
    fault.wait_ready(first)
    assert idle.stop(signal.SIGTERM, timeout=30) == 0

    second = fault.push("2", range(20, 80))
    fault.annotate_now("gitrepository", "repo")
    fault.wait_artifact(second)
    slow = ["--graceful-shutdown-timeout=1s", "--kube-api-qps=20", "--kube-api-burst=20"]
    kustomize = fault.kustomize(*slow).start()
    fault.wait_applying(f"cm-{fault.order[0]:03d}", "2", poll=0.02)
    assert kustomize.stop(signal.SIGTERM, timeout=30) == 0, kustomize.log()[-3000:]
    assert "controller stopped" in kustomize.log()
    fault.assert_consistent()
    ks = fault.kustomization()
    assert not fault.ready(second) and condition(ks, "Reconciling").get("status") == "True", ks["status"]

    fault.kustomize().start()
    fault.wait_ready(second)
    fault.assert_nothing_lost(second)


def connections_to(port: int) -> int:
    """Established TCP connections to a loopback port (the kernel accepts them for a stopped process)."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                if int(fields[2].rsplit(":", 1)[1], 16) == port and fields[3] == "01":
                    count += 1
    return count


def test_source_controller_killed_during_artifact_download(fault_own_source: Fault) -> None:
    """The source controller dies while the kustomize controller downloads an artifact from it: the
    download is retried against the restarted source controller, no partial tree is built, the
    applied state stays the last good one meanwhile."""
    fault = fault_own_source
    first = fault.push("1", range(20))
    fault.create_objects()
    source = fault.source().start()
    fault.kustomize().start()
    fault.wait_ready(first)

    fault.patch_kustomization({"suspend": True})
    second = fault.push("2", range(20))
    fault.annotate_now("gitrepository", "repo")
    fault.wait_artifact(second)
    assert source.proc is not None
    port = int(fault.storage.rsplit(":", 1)[1])
    before = connections_to(port)
    source.proc.send_signal(signal.SIGSTOP)  # the download connects and waits for an answer
    fault.patch_kustomization({"suspend": False})
    wait_until(lambda: connections_to(port) > before, 60, "the kustomize controller's download")
    source.stop(signal.SIGKILL)
    fault.assert_consistent()
    assert fault.kustomization()["status"]["lastAppliedRevision"] == first

    fault.source().start()
    fault.wait_ready(second)
    fault.assert_nothing_lost(second)


class LatencyProxy:
    """A TCP proxy on loopback in front of the API server (TLS passes through untouched): every
    chunk reaches the other side `delay` seconds after it was read, and the proxy counts the
    connections open through it (most at once: `peak`)."""

    def __init__(self, upstream: int, delay: float) -> None:
        self.upstream, self.delay = upstream, delay
        self.open = self.peak = 0
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def start(self) -> LatencyProxy:
        self._thread.start()
        server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._serve, "127.0.0.1", 0), self._loop
        ).result(10)
        self.port = server.sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        async def close() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def deliver() -> None:
            while True:
                due, data = await queue.get()
                await asyncio.sleep(max(0.0, due - self._loop.time()))
                if not data:
                    break
                writer.write(data)
                await writer.drain()
            writer.close()

        sender = asyncio.ensure_future(deliver())
        try:
            while data := await reader.read(65536):
                queue.put_nowait((self._loop.time() + self.delay, data))
        except OSError:
            pass
        queue.put_nowait((self._loop.time() + self.delay, b""))
        with contextlib.suppress(OSError):
            await sender

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.open += 1
        self.peak = max(self.peak, self.open)
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream)
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        except OSError:
            writer.close()
        finally:
            self.open -= 1


def test_slow_api_server(fault: Fault) -> None:
    """The kustomize controller talks to the API server through a proxy adding latency: reconciles
    finish, no request runs into a timeout of Tide's own (only spec.timeout could fail it, as in
    Flux), and the connections open at once stay bounded by the watches and the apply's concurrency
    (no pile-up of in-flight requests)."""
    proxy = LatencyProxy(fault.plane.ports["apiserver"], delay=0.1).start()
    try:
        config = json.loads(fault.plane.kubeconfig.read_text())
        config["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{proxy.port}"
        slow = fault.tmp / "slow.kubeconfig"
        slow.write_text(json.dumps(config))

        first = fault.push("1", range(40))
        fault.create_objects()
        kustomize = fault.kustomize("--concurrent-ssa=4", kubeconfig=slow).start(ready_timeout=60)
        fault.wait_ready(first, timeout=120)
        second = fault.push("2", range(10, 50))
        fault.annotate_now("gitrepository", "repo")
        fault.wait_ready(second, timeout=120)
        fault.assert_nothing_lost(second)
        log = kustomize.log()
        assert "cannot reach" not in log and "reconciliation failed" not in log, log[-3000:]
        # Watches: Kustomization, the four source kinds, ConfigMaps; then 4 applies, one status
        # patch, one event at a time at most.
        print(f"peak connections through the slow proxy: {proxy.peak}")
        assert proxy.peak <= 6 + 4 + 4, f"{proxy.peak} connections open at once"
    finally:
        proxy.stop()
