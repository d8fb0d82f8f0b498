"""HelmRelease end to end with the real Helm on the real control plane: a chart this test writes
(a Deployment, a Service, a CRD under crds/, a test hook), packaged by the real `helm` and served
by nginx as an HTTPS HelmRepository; `tide-helm-controller` and `tide-source-controller` as
processes. The release is read back with the real `helm list` and the real `flux get hr`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from e2e.fixtures.cli import FLUX, TIDE
from e2e.fixtures.helm_repo import HELM, ChartRepo, helm
from e2e.fixtures.kustomize import git_source, kustomization, scrape
from e2e.fixtures.source import apply, condition, get, ocirepository, request_reconcile, wait_for
from e2e.test_helm_engine import CHART as ENGINE_CHART
from e2e.test_helm_sources import served_repository

pytestmark = pytest.mark.e2e

HR = "helmrelease"
API = "helm.toolkit.fluxcd.io/v2"

SERVICE = """apiVersion: v1
kind: Service
metadata:
  name: {{ .Release.Name }}
spec:
  selector: {app: {{ .Release.Name }}}
  ports: [{port: 80}]
"""


def crd(group: str) -> str:
    return f"""apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.{group}
spec:
  group: {group}
  names: {{kind: Widget, plural: widgets, singular: widget}}
  scope: Namespaced
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema: {{type: object, x-kubernetes-preserve-unknown-fields: true}}
"""


def publish_app(repo: ChartRepo, version: str, group: str, crd_text: str | None = None) -> Path:
    """The test's chart: a Deployment, a Service, a CRD under crds/, a test hook."""
    chart = repo.home / "src" / f"app-{version}" / "app"
    for path, text in {
        "Chart.yaml": f"apiVersion: v2\nname: app\nversion: {version}\nappVersion: '{version}'\n",
        "values.yaml": "replicas: 1\nnodeSelector: {}\n",
        "crds/widgets.yaml": crd_text or crd(group),
        "templates/deployment.yaml": ENGINE_CHART["templates/deployment.yaml"],
        "templates/service.yaml": SERVICE,
        "templates/tests/smoke.yaml": ENGINE_CHART["templates/tests/smoke.yaml"],
    }.items():
        (chart / path).parent.mkdir(parents=True, exist_ok=True)
        (chart / path).write_text(text)
    return repo.package(chart)


def helm_release(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": "HelmRelease",
        "metadata": {"name": name},
        "spec": {
            "interval": "10m",
            "timeout": "3m",
            "chart": {"spec": {"chart": "app", "sourceRef": {"kind": "HelmRepository", "name": "charts"}}},
            **spec,
        },
    }


def values_configmap(name: str, text: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "labels": {"reconcile.fluxcd.io/watch": "Enabled"}},
        "data": {"values.yaml": text},
    }


def wait_released(
    kubectl: Callable[..., Any], namespace: str, name: str, version: int, timeout: float = 120
) -> dict:
    """Ready at its generation, with release revision `version` deployed."""

    def ok(obj: dict[str, Any]) -> bool:
        ready = condition(obj, "Ready")
        history = (obj.get("status") or {}).get("history") or [{}]
        return bool(
            ready
            and ready.get("status") == "True"
            and obj["status"].get("observedGeneration") == obj["metadata"]["generation"]
            and history[0].get("version") == version
            and history[0].get("status") == "deployed"
        )

    return wait_for(kubectl, namespace, name, ok, timeout, f"release v{version} Ready", HR)


def wait_condition(
    kubectl: Callable[..., Any],
    namespace: str,
    name: str,
    type_: str,
    status: str | None = None,
    reason: str | None = None,
    timeout: float = 120,
    kind: str = HR,
) -> dict[str, Any]:
    def ok(obj: dict[str, Any]) -> bool:
        found = condition(obj, type_) or {}
        return (status is None or found.get("status") == status) and (
            reason is None or found.get("reason") == reason
        )

    return wait_for(kubectl, namespace, name, ok, timeout, f"{type_} {status or ''} {reason or ''}", kind)


def helm_list(cluster: Any, namespace: str, home: Path) -> list[dict[str, Any]]:
    out = subprocess.run(
        [str(HELM), "list", "-o", "json", "-n", namespace, f"--kubeconfig={cluster.kubeconfig}"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        env={"HOME": str(home), "PATH": "/usr/bin:/bin"},
    )
    return list(json.loads(out.stdout))


@pytest.fixture
def app_chart(chart_repo: ChartRepo, kubectl: Any, namespace: str) -> Iterator[Path]:
    """The test's chart 1.0.0 published (its CRD's group is the test's own, deleted afterwards)."""
    group = f"{namespace}.tide.dev"
    yield publish_app(chart_repo, "1.0.0", group)
    kubectl("delete", "crd", f"widgets.{group}", "--wait=false", check=False)


def wait_pending_install(kubectl: Any, namespace: str, name: str) -> None:
    """Until Helm has stored the release's install, which waits for objects that never get ready."""
    selector = f"owner=helm,name={name},status=pending-install"

    def pending(_: Any) -> bool:
        return bool(kubectl("get", "secret", "-n", namespace, "-l", selector, "-o", "name").stdout.strip())

    wait_for(kubectl, namespace, name, pending, 120, "a pending-install release", HR)


def process_argv(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_text().rstrip("\0").split("\0")


def child_pids(pid: int) -> list[int]:
    return [
        int(c)
        for task in Path(f"/proc/{pid}/task").iterdir()
        for c in (task / "children").read_text().split()
    ]


@dataclass
class HelmControllers:
    """Starts the helm controller (again, after a kill) next to one source controller."""

    start_source: Callable[..., Any]
    start_controller: Callable[..., Any]
    namespace: str
    source: Any = None
    started: list[Any] = field(default_factory=list)

    def __call__(self, *helm_args: str) -> Any:
        if self.source is None:
            self.source = self.start_source()
        helm = self.start_controller(
            "helm",
            "--requeue-dependency=2s",
            f"--source-storage-addr={self.source.address}",
            "--watch-all-namespaces=false",
            f"--runtime-namespace={self.namespace}",
            *helm_args,
        )
        self.started.append(helm)
        return helm


@pytest.fixture
def helm_controllers(
    source_controller: Callable[..., Any], start_controller: Callable[..., Any], namespace: str, kubectl: Any
) -> Iterator[HelmControllers]:
    """The source and helm controllers watching the test's namespace. At teardown its HelmReleases
    are deleted while the controllers run, so their finalizers uninstall."""
    start = HelmControllers(source_controller, start_controller, namespace)
    yield start
    if start.started:
        delete_helm_releases(kubectl, namespace)


def delete_helm_releases(kubectl: Any, namespace: str) -> None:
    """Delete the namespace's HelmReleases and wait: their finalizers uninstall."""
    kubectl(
        "delete",
        "helmreleases.helm.toolkit.fluxcd.io",
        "--all",
        "-n",
        namespace,
        "--timeout=90s",
        check=False,
    )


def test_helm_release_installs_upgrades_and_uninstalls(  # type: ignore[no-untyped-def]
    cluster, app_chart, chart_repo, chart_server, helm_controllers, kubectl, namespace, tmp_path
):
    helm = helm_controllers()
    # Helm runs in the controller's threads: it started itself again as `helm-controller` (Helm's
    # field manager), and no Helm worker process runs beside the post-render server.
    assert process_argv(helm.proc.pid)[0] == "helm-controller"
    servers = [process_argv(child) for child in child_pids(helm.proc.pid)]
    assert [Path(argv[3]).name for argv in servers] == ["postrender_server.py"], servers
    apply(
        kubectl,
        namespace,
        *served_repository(chart_server, chart_repo),
        values_configmap("app-values", "replicas: 2\n"),
        helm_release(
            "app",
            valuesFrom=[{"kind": "ConfigMap", "name": "app-values"}],
            values={"nodeSelector": {}},
            test={"enable": True},
        ),
    )
    hr = wait_released(kubectl, namespace, "app", 1)
    status = hr["status"]
    assert status["helmChart"] == f"{namespace}/{namespace}-app"
    assert status["storageNamespace"] == namespace
    assert status["lastAttemptedRevision"] == "1.0.0"
    assert status["history"][0]["chartName"] == "app"
    assert status["history"][0]["testHooks"]
    assert condition(hr, "Released")["reason"] == "InstallSucceeded"  # type: ignore[index]
    assert condition(hr, "TestSuccess")["status"] == "True"  # type: ignore[index]
    assert status["lastAttemptedConfigDigest"] == status["history"][0]["configDigest"]
    # status.inventory as Flux's: the manifest's objects and the chart's CRD, not the test hook.
    crd_id = f"_widgets.{namespace}.tide.dev_apiextensions.k8s.io_CustomResourceDefinition"
    assert sorted(e["id"] for e in status["inventory"]["entries"]) == sorted(
        [f"{namespace}_app_apps_Deployment", f"{namespace}_app__Service", crd_id]
    )
    # `tide tree hr` reads it (the CRD is not in Helm's stored manifest, only in the inventory).
    tree = subprocess.run(
        [str(TIDE), f"--kubeconfig={cluster.kubeconfig}", "tree", "hr", "app", "-n", namespace],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert tree.returncode == 0, tree.stderr
    assert sorted(line[4:] for line in tree.stdout.splitlines()[1:]) == [
        f"CustomResourceDefinition/widgets.{namespace}.tide.dev",
        f"Deployment/{namespace}/app",
        f"Service/{namespace}/app",
    ], tree.stdout

    # Helm's own view: the release in storage, the objects, the CRD from crds/.
    releases = helm_list(cluster, namespace, tmp_path)
    assert [(r["name"], r["status"], r["chart"], r["revision"]) for r in releases] == [
        ("app", "deployed", "app-1.0.0", "1")
    ]
    deployment = get(kubectl, namespace, "app", "deployment")
    assert deployment["spec"]["replicas"] == 2
    assert deployment["metadata"]["labels"]["helm.toolkit.fluxcd.io/name"] == "app"
    assert get(kubectl, namespace, "app", "service")
    assert kubectl("get", "crd", f"widgets.{namespace}.tide.dev", check=False).returncode == 0
    # Helm's waits (the install's, the test hook's) were answered by the controller's shared watches,
    # none by a watch of their own.
    samples = scrape(helm.metrics_url)
    assert samples.get('tide_helm_wait_watches_total{answered_by="shared_watch"}', 0) >= 2, samples
    assert samples.get('tide_helm_wait_watches_total{answered_by="api_server"}', 0) == 0

    # The real Flux CLI reads it as its own.
    flux = subprocess.run(
        [str(FLUX), f"--kubeconfig={cluster.kubeconfig}", "get", "hr", "-n", namespace],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert flux.returncode == 0, flux.stderr
    row = [cell.strip() for cell in flux.stdout.splitlines()[1].split("\t")]
    assert row[:4] == ["app", "1.0.0", "False", "True"], flux.stdout

    reconciled = subprocess.run(
        [
            str(FLUX),
            f"--kubeconfig={cluster.kubeconfig}",
            "reconcile",
            "hr",
            "app",
            "--with-source",
            "-n",
            namespace,
            "--timeout=90s",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert reconciled.returncode == 0, reconciled.stdout + reconciled.stderr

    # A values change in the watched ConfigMap upgrades.
    apply(kubectl, namespace, values_configmap("app-values", "replicas: 3\n"))
    hr = wait_released(kubectl, namespace, "app", 2)
    assert hr["status"]["history"][0]["configDigest"] != status["history"][0]["configDigest"]
    assert get(kubectl, namespace, "app", "deployment")["spec"]["replicas"] == 3
    assert [r["revision"] for r in helm_list(cluster, namespace, tmp_path)] == ["2"]

    # A new chart version in the repository: the HelmChart pulls it, the release upgrades to it.
    publish_app(chart_repo, "1.1.0", f"{namespace}.tide.dev")
    request_reconcile(kubectl, namespace, "charts", kind="helmrepository")
    hr = wait_released(kubectl, namespace, "app", 3)
    assert (hr["status"]["history"][0]["chartVersion"], hr["status"]["lastAttemptedRevision"]) == (
        "1.1.0",
        "1.1.0",
    )

    # Deletion uninstalls and removes the HelmChart it made.
    kubectl("delete", HR, "app", "-n", namespace, "--timeout=90s")
    assert helm_list(cluster, namespace, tmp_path) == []
    assert not get(kubectl, namespace, "app", "deployment")
    assert not get(kubectl, namespace, f"{namespace}-app", "helmchart")


def test_failed_upgrade_is_rolled_back_then_stalled(  # type: ignore[no-untyped-def]
    cluster, app_chart, chart_repo, chart_server, helm_controllers, kubectl, namespace, tmp_path
):
    helm_controllers()
    apply(
        kubectl,
        namespace,
        *served_repository(chart_server, chart_repo),
        helm_release(
            "app",
            upgrade={"timeout": "3s", "remediation": {"retries": 1}},
            # The rollback's wait would time the terminating Pods of a loaded control plane.
            rollback={"disableWait": True},
        ),
    )
    wait_released(kubectl, namespace, "app", 1)
    # A Deployment that can never become ready: the upgrade fails, is rolled back, is
    # retried once, is rolled back again, and is then Stalled.
    patch = {"spec": {"values": {"nodeSelector": {"tide.dev/none": "true"}}}}
    kubectl("patch", HR, "app", "-n", namespace, "--type=merge", "-p", json.dumps(patch))
    hr = wait_condition(kubectl, namespace, "app", "Stalled", status="True", timeout=180, kind=HR)
    assert condition(hr, "Stalled")["reason"] == "RetriesExceeded"  # type: ignore[index]
    assert condition(hr, "Ready")["status"] == "False"  # type: ignore[index]
    assert condition(hr, "Remediated")["reason"] == "RollbackSucceeded"  # type: ignore[index]
    assert hr["status"]["upgradeFailures"] == 2
    releases = helm_list(cluster, namespace, tmp_path)
    # The rollback left the first chart's objects deployed, as revision 5.
    assert [(r["status"], r["revision"]) for r in releases] == [("deployed", "5")]
    events = kubectl("get", "events", "-n", namespace, "-o", "json").stdout
    reasons = {e["reason"] for e in json.loads(events)["items"]}
    assert {"UpgradeFailed", "RollbackSucceeded"} <= reasons


def test_depends_on_and_storage_namespace(  # type: ignore[no-untyped-def]
    cluster, app_chart, chart_repo, chart_server, helm_controllers, kubectl, namespace, tmp_path
):
    target = f"{namespace}-target"
    kubectl("create", "namespace", target)
    helm_controllers()
    try:
        apply(
            kubectl,
            namespace,
            *served_repository(chart_server, chart_repo),
            # `web` waits for `db`, which cannot be ready until its values change.
            helm_release("db", values={"nodeSelector": {"tide.dev/none": "true"}}, install={"timeout": "3s"}),
            helm_release(
                "web",
                dependsOn=[{"name": "db"}],
                targetNamespace=target,
                install={"crds": "Skip"},
            ),
        )
        wait_condition(kubectl, namespace, "db", "Stalled", status="True", timeout=120, kind=HR)
        wait_condition(kubectl, namespace, "web", "Ready", reason="DependencyNotReady", timeout=120, kind=HR)
        assert helm_list(cluster, namespace, tmp_path)[0]["name"] == "db"
        kubectl("patch", HR, "db", "-n", namespace, "--type=merge", "-p", '{"spec":{"values":null}}')
        wait_released(kubectl, namespace, "db", 2, timeout=180)
        web = wait_released(kubectl, namespace, "web", 1, timeout=180)
        # Objects in the target namespace, release storage in the HelmRelease's namespace.
        assert web["status"]["storageNamespace"] == namespace
        assert web["status"]["history"][0]["namespace"] == target
        release = web["status"]["history"][0]["name"]  # `<target>-web`, shortened past 53 characters
        assert get(kubectl, target, release, "deployment")
        assert {r["name"] for r in helm_list(cluster, namespace, tmp_path)} == {"db", release}
        assert helm_list(cluster, target, tmp_path) == []
    finally:
        kubectl("delete", "namespace", target, "--wait=false", check=False)


HELM_LAYER = "application/vnd.cncf.helm.chart.content.v1.tar+gzip"


def test_oci_chart_ref_under_a_kustomization_health_check(  # type: ignore[no-untyped-def]
    cluster,
    app_chart,
    chart_repo,
    oci_registry,
    git_server,
    helm_controllers,
    start_controller,
    kubectl,
    namespace,
    tmp_path,
):
    """Flux's usual layout: a Kustomization applies a HelmRelease and waits for it to be Ready; the
    chart comes from an OCIRepository and is released as `<version>+<digest[:12]>`. The release
    was first installed by the real `helm install`: the HelmRelease adopts it (an upgrade in place)."""
    archive = app_chart
    registry = oci_registry.plain
    helm("push", str(archive), f"oci://{registry.host}/{namespace}", "--plain-http", home=chart_repo.home)
    kubeconfig = f"--kubeconfig={cluster.kubeconfig}"
    helm("install", "app", str(archive), "-n", namespace, kubeconfig, home=chart_repo.home)
    installed = get(kubectl, namespace, "app", "deployment")["metadata"]["uid"]
    release = helm_release("app", chartRef={"kind": "OCIRepository", "name": "app-chart"})
    del release["spec"]["chart"]
    repo = git_server.create_repo(f"helm-{namespace}", {"deploy/hr.yaml": yaml.safe_dump(release)})
    helm_controllers()
    start_controller(
        "kustomize",
        f"--source-storage-addr={helm_controllers.source.address}",
        "--watch-all-namespaces=false",
        f"--runtime-namespace={namespace}",
        "--requeue-dependency=2s",
    )
    health = [{"apiVersion": API, "kind": "HelmRelease", "name": "app", "namespace": namespace}]
    try:
        apply(
            kubectl,
            namespace,
            ocirepository(
                "app-chart",
                registry.url(f"{namespace}/app"),
                {"tag": "1.0.0"},
                layerSelector={"mediaType": HELM_LAYER, "operation": "copy"},
            ),
            git_source("repo", repo.public_http_url, interval="1h"),
            kustomization(
                "infra", path="./deploy", interval="1h", targetNamespace=namespace, healthChecks=health
            ),
        )
        ks = wait_condition(
            kubectl, namespace, "infra", "Ready", status="True", timeout=180, kind="kustomization"
        )
        assert condition(ks, "Healthy")["status"] == "True"  # type: ignore[index]
        hr = wait_released(kubectl, namespace, "app", 2)
        assert condition(hr, "Released")["reason"] == "UpgradeSucceeded"  # type: ignore[index]
        assert get(kubectl, namespace, "app", "deployment")["metadata"]["uid"] == installed
        revision = get(kubectl, namespace, "app-chart", "ocirepository")["status"]["artifact"]["revision"]
        digest = revision.rsplit(":", 1)[-1]
        assert hr["status"]["history"][0]["chartVersion"] == f"1.0.0+{digest[:12]}"
        assert [(r["chart"], r["revision"]) for r in helm_list(cluster, namespace, tmp_path)] == [
            (f"app-1.0.0+{digest[:12]}", "2")
        ]
    finally:
        kubectl("delete", "kustomization", "infra", "-n", namespace, "--timeout=90s", check=False)


GIZMO = """apiVersion: {{ .Values.group }}/v1
kind: Gizmo
metadata:
  name: {{ .Release.Name }}
spec:
  broken: {{ .Values.broken }}
"""


def publish_gizmo(repo: ChartRepo, group: str) -> Path:
    """A chart rendering one custom resource (its CRD under crds/) whose health only a
    healthCheckExprs expression can tell: kstatus finds no conditions on it."""
    chart = repo.home / "src" / "gizmo"
    for path, text in {
        "Chart.yaml": "apiVersion: v2\nname: gizmo\nversion: 1.0.0\n",
        "values.yaml": f"group: {group}\nbroken: false\n",
        "crds/gizmos.yaml": crd(group).replace("widget", "gizmo").replace("Widget", "Gizmo"),
        "templates/gizmo.yaml": GIZMO,
    }.items():
        (chart / path).parent.mkdir(parents=True, exist_ok=True)
        (chart / path).write_text(text)
    return repo.package(chart)


def test_health_check_exprs_decide_when_the_release_is_ready(  # type: ignore[no-untyped-def]
    cluster, chart_repo, chart_server, helm_controllers, kubectl, namespace, tmp_path
):
    """With the poller strategy, the expressions decide the wait after install: `good` waits
    (Helm's storage says pending-install, as during Helm's own wait) until its Gizmo's status
    satisfies `current`; `broken` fails at once on `failed`, recorded failed in Helm's storage;
    a failing upgrade is remediated as after a failed Helm wait."""
    group = f"{namespace}.tide.dev"
    publish_gizmo(chart_repo, group)
    exprs = [{"apiVersion": f"{group}/v1", "kind": "Gizmo",
              "failed": "has(spec.broken) && spec.broken",
              "current": "has(status.ready) && status.ready"}]  # fmt: skip
    chart = {"spec": {"chart": "gizmo", "sourceRef": {"kind": "HelmRepository", "name": "charts"}}}
    helm_controllers()
    try:
        apply(
            kubectl,
            namespace,
            *served_repository(chart_server, chart_repo),
            helm_release("good", chart=chart, healthCheckExprs=exprs),
            helm_release("broken", chart=chart, healthCheckExprs=exprs, values={"broken": True}),
        )
        hr = wait_condition(kubectl, namespace, "broken", "Released", status="False", reason="InstallFailed")
        message = condition(hr, "Released")["message"]  # type: ignore[index]
        assert message.startswith(
            f"Helm install failed for release {namespace}/broken.v1 with chart gizmo@1.0.0: "
            f"failed early due to stalled resources: [Gizmo/{namespace}/broken status: 'Failed'"
        ), message
        assert [(r["name"], r["status"]) for r in helm_list(cluster, namespace, tmp_path)] == [
            ("broken", "failed")
        ]

        def release_status(name: str) -> str:
            return kubectl("get", "secret", "-n", namespace, "-l", f"owner=helm,name={name}",
                           "-o", "jsonpath={.items[*].metadata.labels.status}").stdout  # fmt: skip

        deadline = time.monotonic() + 60
        while release_status("good") != "pending-install":
            assert time.monotonic() < deadline, release_status("good")
            time.sleep(0.2)
        assert condition(get(kubectl, namespace, "good", HR), "Ready")["status"] != "True"  # type: ignore[index]
        kubectl(
            "patch",
            f"gizmos.{group}",
            "good",
            "-n",
            namespace,
            "--type=merge",
            "-p",
            '{"status": {"ready": true}}',
        )
        hr = wait_released(kubectl, namespace, "good", 1)
        assert condition(hr, "Released")["reason"] == "InstallSucceeded"  # type: ignore[index]
        assert release_status("good") == "deployed"

        # An upgrade that breaks the Gizmo fails as Helm's wait would, and is rolled back (the
        # rollback waits on the expressions too) until its retries are spent: Helm's storage
        # reads as after Helm's own failed waits.
        retry_once = {"remediation": {"retries": 1}}
        broken = helm_release(
            "good", chart=chart, healthCheckExprs=exprs, values={"broken": True}, upgrade=retry_once
        )
        apply(kubectl, namespace, broken)
        hr = wait_condition(kubectl, namespace, "good", "Stalled", status="True")
        released = condition(hr, "Released") or {}
        assert released.get("reason") == "UpgradeFailed", released
        assert "failed early due to stalled resources" in released["message"]
        assert condition(hr, "Remediated")["reason"] == "RollbackSucceeded"  # type: ignore[index]
        assert release_status("good").split() == ["superseded", "failed", "superseded", "failed", "deployed"]
    finally:
        delete_helm_releases(kubectl, namespace)  # uninstalled before their CRD goes
        kubectl("delete", "crd", f"gizmos.{group}", "--wait=false", check=False)


def test_invalid_health_check_expression_stalls(helm_controllers, kubectl, namespace):  # type: ignore[no-untyped-def]
    """Flux: Stalled and Ready=False InvalidCELExpression with its terminal message, a Warning
    Event with the error, nothing fetched or installed."""
    helm_controllers()
    check = {"apiVersion": "v1", "kind": "ConfigMap", "current": "data.state =="}
    apply(kubectl, namespace, helm_release("cel", healthCheckExprs=[check]))
    hr = wait_condition(kubectl, namespace, "cel", "Stalled", status="True", timeout=60, kind=HR)
    ready = condition(hr, "Ready")
    assert ready and (ready["status"], ready["reason"]) == ("False", "InvalidCELExpression")
    assert ready["message"].startswith("Reconciliation failed terminally due to configuration error: ")
    assert "data.state ==" in ready["message"]
    assert hr["status"]["observedGeneration"] == hr["metadata"]["generation"]
    events = json.loads(kubectl("get", "events", "-n", namespace, "-o", "json").stdout)["items"]
    warnings = [
        e["message"] for e in events if e["reason"] == "InvalidCELExpression" and e["type"] == "Warning"
    ]
    assert warnings and not warnings[0].startswith("Reconciliation failed terminally")
    assert not get(kubectl, namespace, f"{namespace}-cel", "helmchart")


def test_kill_during_install_is_unlocked_by_the_next_run(  # type: ignore[no-untyped-def]
    cluster, app_chart, chart_repo, chart_server, helm_controllers, kubectl, namespace, tmp_path
):
    """`kill -9` of the controller (Helm runs in it) and its post-render server mid-install leaves
    the release pending-install; the next controller unlocks it (PendingRelease) and releases it."""
    controller = helm_controllers()
    apply(
        kubectl,
        namespace,
        *served_repository(chart_server, chart_repo),
        helm_release("app", values={"nodeSelector": {"tide.dev/none": "true"}}, install={"timeout": "120s"}),
    )
    wait_pending_install(kubectl, namespace, "app")
    pid = controller.proc.pid
    for child in child_pids(pid):
        os.kill(child, signal.SIGKILL)
    os.kill(pid, signal.SIGKILL)
    controller.proc.wait(10)

    kubectl("patch", HR, "app", "-n", namespace, "--type=merge", "-p", '{"spec":{"values":null}}')
    helm_controllers()
    hr = wait_released(kubectl, namespace, "app", 2, timeout=180)
    assert [s["status"] for s in hr["status"]["history"]][:1] == ["deployed"]
    events = json.loads(kubectl("get", "events", "-n", namespace, "-o", "json").stdout)["items"]
    assert "PendingRelease" in {e["reason"] for e in events}


def test_sigterm_during_install_leaves_no_release_locked(  # type: ignore[no-untyped-def]
    cluster, app_chart, chart_repo, chart_server, helm_controllers, kubectl, namespace, tmp_path
):
    """SIGTERM mid-install, past the grace period: Helm's action is cancelled in the controller's
    own threads, Helm records the release failed (not pending), and the controller exits."""
    controller = helm_controllers("--graceful-shutdown-timeout=2s")
    apply(
        kubectl,
        namespace,
        *served_repository(chart_server, chart_repo),
        helm_release("app", values={"nodeSelector": {"tide.dev/none": "true"}}, install={"timeout": "120s"}),
    )
    wait_pending_install(kubectl, namespace, "app")
    started = time.monotonic()
    assert controller.stop(signal.SIGTERM, timeout=60) == 0, controller.log()[-3000:]
    assert time.monotonic() - started < 30
    releases = helm_list(cluster, namespace, tmp_path)
    assert [(r["name"], r["status"]) for r in releases] == [("app", "failed")]
    # Suspended, its deletion at teardown only drops the finalizer (the namespace takes the rest).
    kubectl("patch", HR, "app", "-n", namespace, "--type=merge", "-p", '{"spec":{"suspend":true}}')
    helm_controllers()
