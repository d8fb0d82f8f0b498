"""The Helm engine against the real control plane: Helm v4 SDK installs, upgrades, tests, rolls
back and uninstalls a chart this test writes; release storage in storageNamespace while objects go
to the target namespace; field manager helm-controller; Tide's post-renderer plugin; Helm's
timeout told apart from Tide's cancellation; a release left pending is unlocked and upgraded."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from pathlib import Path

import pytest

from tide.controllers.helm.engine import (
    EngineCrashed,
    EngineError,
    HelmEngine,
    InstallOptions,
    ReleaseTimeout,
    RollbackOptions,
    Target,
    UninstallOptions,
    UpgradeOptions,
)
from tide.controllers.helm.engine import (
    TestOptions as HelmTestOptions,
)
from tide.controllers.helm.postrender import PostRenderSpec
from tide.controllers.helm.storage import ReleaseStorage, digest_matches, snapshot
from tide.controllers.helm.values import config_digest
from tide.shared.kube.config import load_connection
from tide.shared.kustomize.build import find_kustomize

pytestmark = pytest.mark.e2e

CHART = {
    "Chart.yaml": "apiVersion: v2\nname: demo\nversion: 1.0.0\nappVersion: '2.0'\n",
    "values.yaml": "replicas: 1\ngreeting: hello\nnodeSelector: {}\n",
    "templates/configmap.yaml": """
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ .Release.Name }}-config
data:
  greeting: {{ .Values.greeting | quote }}
""",
    "templates/deployment.yaml": """
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ .Release.Name }}
spec:
  replicas: {{ .Values.replicas }}
  selector:
    matchLabels: {app: {{ .Release.Name }}}
  template:
    metadata:
      labels: {app: {{ .Release.Name }}}
    spec:
      nodeSelector: {{ toJson .Values.nodeSelector }}
      containers:
      - name: app
        image: registry.invalid/app:1
""",
    "templates/tests/smoke.yaml": """
apiVersion: batch/v1
kind: Job
metadata:
  name: {{ .Release.Name }}-smoke
  annotations: {helm.sh/hook: test}
spec:
  backoffLimit: 0
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: t
        image: registry.invalid/t:1
""",
}


def write_chart(root: Path) -> str:
    chart = root / "demo"
    for name, text in CHART.items():
        (chart / name).parent.mkdir(parents=True, exist_ok=True)
        (chart / name).write_text(text)
    return str(chart)


@pytest.fixture
async def engine(cluster):
    helm = HelmEngine(await load_connection(str(cluster.kubeconfig)))
    await helm.start()
    try:
        yield helm
    finally:
        await helm.close()


@pytest.fixture
def storage_namespace(kubectl, namespace):
    name = f"{namespace}-store"
    kubectl("create", "namespace", name)
    yield name
    kubectl("delete", "namespace", name, "--wait=false", check=False)


def objects(kubectl, kind: str, namespace: str) -> list[dict]:
    return json.loads(kubectl("get", kind, "-n", namespace, "-o", "json").stdout)["items"]


async def test_release_lifecycle_as_flux_stores_and_owns_it(
    engine, kube, kubectl, namespace, storage_namespace, tmp_path
):
    chart = write_chart(tmp_path)
    target = Target("demo", namespace, storage_namespace)
    origin = PostRenderSpec(name="demo-hr", namespace="flux-apps", labels={"team": "a"})

    await engine.install(target, chart, {"greeting": "hi"}, InstallOptions(timeout_seconds=60), origin)

    # (a) release storage in storageNamespace, objects in the target namespace.
    stored_names = [s["metadata"]["name"] for s in objects(kubectl, "secret", storage_namespace)]
    assert stored_names == ["sh.helm.release.v1.demo.v1"]
    assert not [s for s in objects(kubectl, "secret", namespace) if s["type"] == "helm.sh/release.v1"]
    config = json.loads(
        kubectl(
            "get", "configmap", "demo-config", "-n", namespace, "-o", "json", "--show-managed-fields"
        ).stdout
    )
    assert config["data"] == {"greeting": "hi"}
    # (b) Flux's field manager.
    managers = {f["manager"] for f in config["metadata"]["managedFields"]}
    assert managers == {"helm-controller"}
    # (d) Tide's post-renderer ran inside Helm: commonMetadata and origin labels.
    labels = config["metadata"]["labels"]
    assert labels["team"] == "a"
    assert labels["helm.toolkit.fluxcd.io/name"] == "demo-hr"
    assert labels["helm.toolkit.fluxcd.io/namespace"] == "flux-apps"

    storage = ReleaseStorage(kube, storage_namespace)
    v1 = await storage.latest("demo")
    assert v1 is not None
    assert (v1.version, v1.status, v1.namespace, v1.config) == (1, "deployed", namespace, {"greeting": "hi"})
    snap = snapshot(v1, action="install")
    assert snap.config_digest == config_digest({"greeting": "hi"})
    assert (snap.chart_name, snap.chart_version, snap.app_version) == ("demo", "1.0.0", "2.0")

    await engine.upgrade(
        target, chart, {"greeting": "hello again"}, UpgradeOptions(timeout_seconds=60), origin
    )
    v2 = await storage.latest("demo")
    assert v2 is not None and (v2.version, v2.status) == (2, "deployed")
    assert not digest_matches(snap, v2)  # storage moved on: the old snapshot no longer verifies
    assert [r.status for r in await storage.history("demo")] == ["superseded", "deployed"]
    assert [r["revision"] for r in await engine.history(target)] == [1, 2]

    await engine.test(target, HelmTestOptions(timeout_seconds=60))
    tested = await storage.latest("demo")
    assert tested is not None
    assert {name: hook.phase for name, hook in tested.test_hooks().items()} == {"demo-smoke": "Succeeded"}
    # Running tests does not change what Flux's digest covers.
    assert digest_matches(snapshot(v2), tested)

    await engine.rollback(target, RollbackOptions(version=1, timeout_seconds=60))
    v3 = await storage.latest("demo")
    assert v3 is not None and (v3.version, v3.status, v3.config) == (3, "deployed", {"greeting": "hi"})

    await engine.uninstall(target, UninstallOptions(timeout_seconds=60))
    assert await storage.latest("demo") is None
    assert kubectl("get", "configmap", "demo-config", "-n", namespace, check=False).returncode != 0


async def test_helm_timeout_is_a_timeout_and_a_stuck_release_is_unlocked(
    engine, kube, namespace, storage_namespace, tmp_path
):
    chart = write_chart(tmp_path)
    target = Target("stuck", namespace, storage_namespace)
    unschedulable = {"nodeSelector": {"tide.dev/none": "true"}}

    # Helm's own wait timeout (the Deployment never becomes ready): ReleaseTimeout.
    with pytest.raises(ReleaseTimeout):
        await engine.install(target, chart, unschedulable, InstallOptions(timeout_seconds=3))
    storage = ReleaseStorage(kube, storage_namespace)
    failed = await storage.latest("stuck")
    assert failed is not None and failed.status == "failed"

    # Tide's cancellation (a shutdown mid-upgrade) leaves the release pending, as a kill would.
    upgrade = asyncio.create_task(
        engine.upgrade(target, chart, unschedulable, UpgradeOptions(timeout_seconds=120))
    )
    for _ in range(600):  # until Helm has recorded the upgrade (pending-upgrade)
        latest = await storage.latest("stuck")
        if latest is not None and latest.version == 2:
            break
        await asyncio.sleep(0.1)
    upgrade.cancel()
    with pytest.raises(asyncio.CancelledError):
        await upgrade
    locked = await storage.latest("stuck")
    assert locked is not None and locked.version == 2
    if locked.is_pending:
        unlocked = await storage.unlock(locked)
        assert unlocked.status == "failed"
        assert unlocked.info["description"] == "Release unlocked from stale 'pending-upgrade' state"

    # After the unlock Helm takes the release again (no "another operation is in progress").
    await engine.upgrade(target, chart, {}, UpgradeOptions(timeout_seconds=60))
    latest = await storage.latest("stuck")
    assert latest is not None and (latest.version, latest.status) == (3, "deployed")


async def test_a_killed_helm_worker_leaves_a_pending_release_that_is_unlocked(
    engine, kube, namespace, storage_namespace, tmp_path
):
    chart = write_chart(tmp_path)
    target = Target("killed", namespace, storage_namespace)
    unschedulable = {"nodeSelector": {"tide.dev/none": "true"}}
    storage = ReleaseStorage(kube, storage_namespace)

    install = asyncio.create_task(
        engine.install(target, chart, unschedulable, InstallOptions(timeout_seconds=120))
    )
    for _ in range(600):  # until Helm has recorded the install
        if await storage.latest("killed") is not None:
            break
        await asyncio.sleep(0.1)
    pid = engine.worker_pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(EngineCrashed):
        await install

    locked = await storage.latest("killed")
    assert locked is not None and locked.status == "pending-install"
    unlocked = await storage.unlock(locked)
    assert unlocked.status == "failed"

    # A new worker takes the next call, and Helm upgrades the unlocked release.
    await engine.upgrade(target, chart, {}, UpgradeOptions(timeout_seconds=60))
    latest = await storage.latest("killed")
    assert latest is not None and (latest.version, latest.status) == (2, "deployed")
    assert engine.worker_pid not in (None, pid)


async def test_a_chart_forging_release_storage_is_refused(
    engine, kube, namespace, storage_namespace, tmp_path
):
    chart = write_chart(tmp_path)
    forged = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: sh.helm.release.v1.victim.v9\n"
    (Path(chart) / "templates" / "forged.yaml").write_text(forged)
    with pytest.raises(EngineError, match='post-renderer plugin "tide-postrender"'):  # Helm drops its stderr
        await engine.install(Target("forger", namespace, storage_namespace), chart, {}, InstallOptions())
    assert await ReleaseStorage(kube, storage_namespace).latest("victim") is None
    assert await ReleaseStorage(kube, storage_namespace).latest("forger") is None


async def test_a_failing_kustomize_post_renderer_says_why(engine, kube, namespace, tmp_path):
    """kustomize's own message reaches the caller (Helm drops the plugin's stderr); nothing is stored."""
    patch = {"patch": '[{"op": "remove", "path": "/data/nothing"}]', "target": {"kind": "ConfigMap"}}
    kustomization = {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
                     "resources": ["helm-output.yaml"], "patches": [patch]}  # fmt: skip
    spec = PostRenderSpec(
        name="x", namespace="y", kustomize=[kustomization], kustomize_binary=find_kustomize()
    )
    with pytest.raises(
        EngineError, match=r"kustomize post-renderer: kustomize build failed: error in remove"
    ):
        await engine.install(
            Target("x", namespace, namespace), write_chart(tmp_path), {}, InstallOptions(), spec
        )
    assert await ReleaseStorage(kube, namespace).latest("x") is None


async def test_an_unknown_field_fails_the_install_as_with_helms_own_check(
    engine, kube, namespace, storage_namespace, tmp_path
):
    """Helm's client-side OpenAPI check is left out where the API server validates every kind
    itself (this plane: no aggregated APIService): a manifest with a field the schema lacks still
    fails the install, refused by the server (Helm applies with fieldValidation=Strict)."""
    for _ in range(100):  # the proxy's watches have listed the APIServices
        if engine.proxy.server_validates_fields("local"):
            break
        await asyncio.sleep(0.1)
    assert engine.proxy.server_validates_fields("local")
    chart = write_chart(tmp_path)
    bad = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: bad\nnotAField: 1\ndata: {a: b}\n"
    (Path(chart) / "templates" / "bad.yaml").write_text(bad)
    with pytest.raises(EngineError, match="notAField"):
        await engine.install(Target("strict", namespace, storage_namespace), chart, {}, InstallOptions())
