"""Upstream outages: the Git server (HTTP and SSH), an OCI registry and a Helm chart repository go
down while the controllers run, then come back.

While an upstream is down its source says so (Ready=False with the cause, FetchFailed, a Warning
Event), keeps its last artifact and the artifact server keeps serving it, and whatever was applied
from it stays as it was: Kustomizations reconcile the last artifact (nothing pruned, nothing
changed), a HelmRelease keeps its release. When the upstream returns the sources recover on their
own (retries back off up to --max-retry-delay) and what changed meanwhile is applied. Each test has
upstream servers of its own: the session's stay up for the other tests.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from e2e.fixtures.git import GitServer, make_pki
from e2e.fixtures.helm_repo import PASSWORD, USER, ChartRepo, ChartServer
from e2e.fixtures.kustomize import kustomization, wait_ks
from e2e.fixtures.oci import Registry
from e2e.fixtures.outages import (
    assert_artifact_served,
    assert_failing_with_cause,
    assert_nothing_lost,
    configmap_files,
    unmanaged_configmap,
    warning_events,
)
from e2e.fixtures.source import (
    apply,
    condition,
    gitrepository,
    ocirepository,
    request_reconcile,
    secret,
    wait_failing,
    wait_for,
    wait_handled,
    wait_ready,
)

pytestmark = pytest.mark.e2e

# Flux's flag: retries back off from 750ms up to this (15 min by default), so a test sees recovery
# within seconds of the upstream's return.
RETRY = "--max-retry-delay=2s"


def scoped(namespace: str) -> tuple[str, ...]:
    """The kustomize controller reconciles only this test's Kustomizations."""
    return ("--watch-all-namespaces=false", f"--runtime-namespace={namespace}")


def build(tag: str, version: int) -> dict[str, dict[str, str]]:
    """The desired ConfigMaps of a path at a version: v2 changes one, drops one, adds one."""
    if version == 1:
        return {f"{tag}-a": {"v": "1"}, f"{tag}-b": {"v": "1"}}
    return {f"{tag}-a": {"v": "2"}, f"{tag}-c": {"v": "2"}}


def reconcile_kustomization(kubectl: Any, namespace: str, name: str) -> dict[str, Any]:
    """A requested reconcile, finished: the evidence a "nothing changed" check needs."""
    token = request_reconcile(kubectl, namespace, name, kind="kustomization")
    return wait_handled(kubectl, namespace, name, token, kind="kustomization")


@pytest.fixture
def own_git_server(tmp_path: Path) -> Any:
    server = GitServer(tmp_path / "git").start()
    yield server
    server.stop()


def test_git_server_down_over_http_and_ssh(own_git_server, flux_controllers, kubectl, namespace) -> None:  # type: ignore[no-untyped-def]
    server = own_git_server
    files = {**configmap_files("http", build("http", 1)), **configmap_files("ssh", build("ssh", 1))}
    repo = server.create_repo("outage", files)
    first = f"main@sha1:{repo.head()}"
    flux_controllers(RETRY, *scoped(namespace), source_args=(RETRY,))
    unmanaged_configmap(kubectl, namespace, "outside")
    apply(
        kubectl,
        namespace,
        secret("ssh", {"identity": server.ssh_identity, "known_hosts": server.known_hosts}),
        gitrepository("http", repo.public_http_url, interval="1m"),
        gitrepository("ssh", repo.ssh_url, secret="ssh", interval="1m"),
        kustomization("http", path="./http", source="http", targetNamespace=namespace),
        kustomization("ssh", path="./ssh", source="ssh", targetNamespace=namespace),
    )
    for name in ("http", "ssh"):
        wait_ks(kubectl, namespace, name, revision=first)
        assert_nothing_lost(kubectl, namespace, name, build(name, 1), outside=("outside",))

    server.stop_serving()
    second = f"main@sha1:{repo.commit({**configmap_files('http', build('http', 2)), **configmap_files('ssh', build('ssh', 2)), 'http/http-b.yaml': None, 'ssh/ssh-b.yaml': None}, 'v2')}"  # noqa: E501
    causes = {"http": (f"127.0.0.1:{server.http_port}", "refused"), "ssh": (f"{server.ssh_port}", "refused")}
    for name in ("http", "ssh"):
        request_reconcile(kubectl, namespace, name)
        obj = wait_failing(kubectl, namespace, name, contains="refused")
        message = assert_failing_with_cause(obj, "GitOperationFailed", *causes[name])
        assert_artifact_served(obj, first)
        assert any(message in m for m in warning_events(kubectl, namespace, name, "GitOperationFailed"))
        # The Kustomization reconciles the last artifact: Ready, nothing pruned, nothing changed.
        ks = reconcile_kustomization(kubectl, namespace, name)
        ready = condition(ks, "Ready") or {}
        assert ready.get("status") == "True", ready
        assert ks["status"]["lastAppliedRevision"] == first
        assert_nothing_lost(kubectl, namespace, name, build(name, 1), outside=("outside",))

    server.serve_again()
    for name in ("http", "ssh"):
        obj = wait_ready(kubectl, namespace, name, second)
        assert condition(obj, "FetchFailed") is None
        wait_ks(kubectl, namespace, name, revision=second)
        assert_nothing_lost(kubectl, namespace, name, build(name, 2), outside=("outside",))


def test_registry_down(flux_controllers, kubectl, namespace, tmp_path) -> None:  # type: ignore[no-untyped-def]
    registry = Registry(tmp_path / "registry").start()
    try:
        digest = registry.push("app", "latest", configmap_files(".", build("oci", 1)))  # type: ignore[arg-type]
        first = f"latest@{digest}"
        flux_controllers(RETRY, *scoped(namespace), source_args=(RETRY,))
        unmanaged_configmap(kubectl, namespace, "outside")
        ks = kustomization("oci", source="oci", targetNamespace=namespace)
        ks["spec"]["sourceRef"]["kind"] = "OCIRepository"
        apply(
            kubectl,
            namespace,
            ocirepository("oci", registry.url("app"), ref={"tag": "latest"}, insecure=True, interval="1m"),
            ks,
        )
        wait_ks(kubectl, namespace, "oci", revision=first)
        assert_nothing_lost(kubectl, namespace, "oci", build("oci", 1), outside=("outside",))

        registry.stop()
        request_reconcile(kubectl, namespace, "oci", kind="ocirepository")
        obj = wait_failing(kubectl, namespace, "oci", contains="refused", kind="ocirepository")
        message = assert_failing_with_cause(obj, "OCIArtifactPullFailed", registry.host, "refused")
        assert_artifact_served(obj, first)
        assert any(message in m for m in warning_events(kubectl, namespace, "oci", "OCIArtifactPullFailed"))
        ks = reconcile_kustomization(kubectl, namespace, "oci")
        assert (condition(ks, "Ready") or {}).get("status") == "True"
        assert ks["status"]["lastAppliedRevision"] == first
        assert_nothing_lost(kubectl, namespace, "oci", build("oci", 1), outside=("outside",))

        registry.start()
        wait_ready(kubectl, namespace, "oci", first, kind="ocirepository")
        digest = registry.push("app", "latest", configmap_files(".", build("oci", 2)))  # type: ignore[arg-type]
        second = f"latest@{digest}"
        request_reconcile(kubectl, namespace, "oci", kind="ocirepository")
        wait_ready(kubectl, namespace, "oci", second, kind="ocirepository")
        wait_ks(kubectl, namespace, "oci", revision=second)
        assert_nothing_lost(kubectl, namespace, "oci", build("oci", 2), outside=("outside",))
    finally:
        registry.stop()


def helm_repository(url: str) -> dict[str, Any]:
    spec = {"url": url, "interval": "1m", "timeout": "10s"}
    refs = {"secretRef": {"name": "charts-auth"}, "certSecretRef": {"name": "charts-ca"}}
    return {"apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "HelmRepository",
            "metadata": {"name": "charts"}, "spec": {**spec, **refs}}  # fmt: skip


def helm_release(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "helm.toolkit.fluxcd.io/v2",
        "kind": "HelmRelease",
        "metadata": {"name": name},
        "spec": {
            "interval": "1m",
            "timeout": "1m",
            "chart": {
                "spec": {
                    "chart": "app",
                    "version": "*",
                    "interval": "1m",
                    "sourceRef": {"kind": "HelmRepository", "name": "charts"},
                }
            },
        },
    }


def released(obj: dict[str, Any], version: int, chart: str) -> bool:
    ready = condition(obj, "Ready") or {}
    history = (obj.get("status") or {}).get("history") or [{}]
    return (
        ready.get("status") == "True"
        and history[0].get("version") == version
        and history[0].get("chartVersion") == chart
        and history[0].get("status") == "deployed"
    )


def test_chart_repository_down(  # type: ignore[no-untyped-def]
    source_controller, start_controller, kubectl, namespace, tmp_path
) -> None:
    server = ChartServer(tmp_path / "charts", make_pki(tmp_path / "pki")).start()
    try:
        repo = ChartRepo(server, "repo", tmp_path / "helm-home")
        repo.publish("app", "1.0.0", values="color: blue\n")
        source = source_controller(RETRY)
        start_controller(
            "helm",
            RETRY,
            f"--source-storage-addr={source.address}",
            "--watch-all-namespaces=false",
            f"--runtime-namespace={namespace}",
        )
        unmanaged_configmap(kubectl, namespace, "outside")
        apply(
            kubectl,
            namespace,
            secret("charts-auth", {"username": USER, "password": PASSWORD}),
            secret("charts-ca", {"ca.crt": server.pki.ca_pem}),
            helm_repository(repo.url),
            helm_release("rel"),
        )
        wait_for(kubectl, namespace, "rel", lambda o: released(o, 1, "1.0.0"), 90, "v1", "helmrelease")
        index = wait_ready(kubectl, namespace, "charts", kind="helmrepository")["status"]["artifact"]
        chart_name = f"{namespace}-rel"
        chart = wait_ready(kubectl, namespace, chart_name, "1.0.0", kind="helmchart")
        cm = kubectl("get", "configmap", "rel-cm", "-n", namespace, "-o", "jsonpath={.data.color}").stdout
        assert cm == "blue"

        server.stop()
        request_reconcile(kubectl, namespace, "charts", kind="helmrepository")
        obj = wait_failing(kubectl, namespace, "charts", contains="refused", kind="helmrepository")
        message = assert_failing_with_cause(obj, "Failed", f"localhost:{server.port}", "refused")
        assert_artifact_served(obj, index["revision"])
        assert any(message in m for m in warning_events(kubectl, namespace, "charts", "Failed"))
        # The chart built from the last index stays Ready and served; the release stays as it was.
        token = request_reconcile(kubectl, namespace, chart_name, kind="helmchart")
        chart = wait_handled(kubectl, namespace, chart_name, token, kind="helmchart")
        assert (condition(chart, "Ready") or {}).get("status") == "True", chart["status"]
        assert_artifact_served(chart, "1.0.0")
        token = request_reconcile(kubectl, namespace, "rel", kind="helmrelease")
        rel = wait_handled(kubectl, namespace, "rel", token, kind="helmrelease")
        assert released(rel, 1, "1.0.0"), rel["status"]
        cm = kubectl("get", "configmap", "rel-cm", "-n", namespace, "-o", "jsonpath={.data.color}").stdout
        assert cm == "blue"

        repo.publish("app", "1.1.0", values="color: green\n")  # published while the server is down
        server.start()
        wait_for(kubectl, namespace, "rel", lambda o: released(o, 2, "1.1.0"), 90, "v2", "helmrelease")
        obj = wait_ready(kubectl, namespace, "charts", kind="helmrepository")
        assert condition(obj, "FetchFailed") is None
        listed = kubectl("get", "configmaps", "-n", namespace, "-o", "jsonpath={.items[*].metadata.name}")
        assert {"rel-cm", "outside"} <= set(listed.stdout.split())
        cm = kubectl("get", "configmap", "rel-cm", "-n", namespace, "-o", "jsonpath={.data.color}").stdout
        assert cm == "green"
    finally:
        kubectl("delete", "helmreleases.helm.toolkit.fluxcd.io", "--all", "-n", namespace,
                "--timeout=60s", check=False)  # fmt: skip
        kubectl("delete", "helmrepositories.source.toolkit.fluxcd.io,helmcharts.source.toolkit.fluxcd.io",
                "--all", "-n", namespace, "--timeout=60s", check=False)  # fmt: skip
        server.stop()
