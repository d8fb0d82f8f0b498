"""`tide create/get/suspend/resume/export/events/version` against the real control plane (no controllers)."""

from __future__ import annotations

import json

import pytest
import yaml

pytestmark = pytest.mark.e2e


def create_pair(tide, namespace: str) -> None:
    tide(
        "-n",
        namespace,
        "create",
        "source",
        "git",
        "podinfo",
        "--url",
        "https://example.com/podinfo.git",
        "--branch",
        "main",
        "--no-wait",
    )
    tide(
        "-n",
        namespace,
        "create",
        "kustomization",
        "apps",
        "--source",
        "podinfo",
        "--path",
        "./deploy",
        "--prune",
        "--no-wait",
    )


def test_create_export_needs_no_cluster(tide) -> None:
    out = tide(
        "create",
        "source",
        "git",
        "podinfo",
        "--url",
        "https://github.com/stefanprodan/podinfo",
        "--branch",
        "master",
        "--interval",
        "90s",
        "--export",
    ).stdout
    assert out.startswith("---\n")
    doc = yaml.safe_load(out)
    assert doc == {
        "apiVersion": "source.toolkit.fluxcd.io/v1",
        "kind": "GitRepository",
        "metadata": {"name": "podinfo", "namespace": "flux-system"},
        "spec": {
            "interval": "1m30s",
            "ref": {"branch": "master"},
            "url": "https://github.com/stefanprodan/podinfo",
        },
    }
    out = tide(
        "create",
        "secret",
        "git",
        "creds",
        "--url",
        "https://example.com/x.git",
        "-u",
        "me",
        "-p",
        "pw",
        "--export",
    ).stdout
    assert yaml.safe_load(out)["stringData"] == {"username": "me", "password": "pw"}


def test_create_then_get_tables(tide, namespace) -> None:
    create_pair(tide, namespace)
    out = tide("-n", namespace, "get", "sources", "git").stdout.splitlines()
    assert out[0].split() == ["NAME", "REVISION", "SUSPENDED", "READY", "MESSAGE"]
    assert out[1].split()[:3] == ["podinfo", "False", "Unknown"]
    assert "waiting to be reconciled" in out[1]
    ks = tide("get", "ks", "-A").stdout
    assert any(line.split()[:2] == [namespace, "apps"] for line in ks.splitlines()[1:])
    assert ks.splitlines()[0].split()[:2] == ["NAMESPACE", "NAME"]
    everything = tide("-n", namespace, "get", "all").stdout
    assert "gitrepository/podinfo" in everything and "kustomization/apps" in everything
    # the object as stored is what create sent
    obj = json.loads(tide("-n", namespace, "get", "ks", "apps", "-o", "json").stdout)["items"][0]
    assert obj["spec"]["sourceRef"] == {"kind": "GitRepository", "name": "podinfo"}
    assert obj["spec"]["prune"] is True and obj["spec"]["path"] == "./deploy"


def test_create_is_idempotent_and_updates(tide, namespace, kubectl) -> None:
    create_pair(tide, namespace)
    tide(
        "-n",
        namespace,
        "create",
        "kustomization",
        "apps",
        "--source",
        "podinfo",
        "--path",
        "./other",
        "--no-wait",
    )
    got = json.loads(
        kubectl("-n", namespace, "get", "kustomization", "apps", "-o", "json", "--show-managed-fields").stdout
    )
    assert got["spec"]["path"] == "./other"
    assert got["spec"]["prune"] is False
    managers = {m["manager"] for m in got["metadata"]["managedFields"]}
    assert "flux" in managers


def test_status_selector(tide, namespace) -> None:
    create_pair(tide, namespace)
    assert "apps" in tide("-n", namespace, "get", "ks", "--status-selector", "ready=unknown").stdout
    res = tide("-n", namespace, "get", "ks", "--status-selector", "ready=true")
    assert res.stdout == "" and "no Kustomization objects found" in res.stderr
    tide("-n", namespace, "get", "ks", "--status-selector", "nonsense", code=2)


def test_suspend_and_resume(tide, namespace, kubectl) -> None:
    create_pair(tide, namespace)
    tide("-n", namespace, "suspend", "kustomization", "apps")
    row = tide("-n", namespace, "get", "ks", "apps").stdout.splitlines()[1].split()
    assert row[1] == "True"  # SUSPENDED (no revision yet)
    res = tide("-n", namespace, "reconcile", "ks", "apps", code=2)
    assert "suspended" in res.stderr and "tide resume" in res.stderr
    tide("-n", namespace, "resume", "kustomization", "apps", "--no-wait")
    got = json.loads(kubectl("-n", namespace, "get", "kustomization", "apps", "-o", "json").stdout)
    assert got["spec"]["suspend"] is False
    assert got["metadata"]["annotations"]["reconcile.fluxcd.io/requestedAt"]
    tide("-n", namespace, "suspend", "source", "git", "--all")
    assert (
        json.loads(kubectl("-n", namespace, "get", "gitrepository", "podinfo", "-o", "json").stdout)["spec"][
            "suspend"
        ]
        is True
    )


def test_unknown_objects_are_user_errors(tide, namespace) -> None:
    res = tide("-n", namespace, "reconcile", "source", "git", "missing", code=2)
    assert "not found" in res.stderr
    tide("-n", namespace, "get", "ks", "missing", code=2)
    tide("-n", namespace, "resume", "ks", "missing", "--no-wait", code=2)


def test_export_round_trips(tide, namespace, kubectl) -> None:
    create_pair(tide, namespace)
    out = tide("-n", namespace, "export", "source", "git", "--all").stdout
    docs = list(yaml.safe_load_all(out))
    assert len(docs) == 1 and "status" not in docs[0]
    assert set(docs[0]["metadata"]) == {"name", "namespace"}
    kubectl("delete", "-n", namespace, "gitrepository", "podinfo")
    kubectl("apply", "--server-side", "-f", "-", input=out)
    assert "podinfo" in tide("-n", namespace, "get", "sources", "git").stdout
    ks = yaml.safe_load(tide("-n", namespace, "export", "ks", "apps").stdout)
    assert ks["spec"]["path"] == "./deploy"


def test_events_for_flux_objects(tide, namespace, kubectl) -> None:
    create_pair(tide, namespace)
    uid = json.loads(kubectl("-n", namespace, "get", "kustomization", "apps", "-o", "json").stdout)[
        "metadata"
    ]["uid"]
    event = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": "apps.1", "namespace": namespace},
        "involvedObject": {
            "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
            "kind": "Kustomization",
            "name": "apps",
            "namespace": namespace,
            "uid": uid,
        },
        "type": "Warning",
        "reason": "BuildFailed",
        "message": "kustomization.yaml not found",
        "firstTimestamp": "2026-01-01T00:00:00Z",
        "lastTimestamp": "2026-01-01T00:00:00Z",
        "count": 1,
        "source": {"component": "kustomize-controller"},
    }
    kubectl("create", "-f", "-", input=json.dumps(event))
    out = tide("-n", namespace, "events").stdout.splitlines()
    assert out[0].split()[:3] == ["LAST", "SEEN", "TYPE"]
    assert any("BuildFailed" in line and "Kustomization/apps" in line for line in out)
    assert "BuildFailed" in tide("-n", namespace, "events", "--for", "Kustomization/apps").stdout
    res = tide("-n", namespace, "events", "--for", "GitRepository/podinfo")
    assert "BuildFailed" not in res.stdout


def test_version(tide) -> None:
    assert tide("version", "--client").stdout.startswith("tide: v")
    data = json.loads(tide("version", "-o", "json").stdout)
    assert data["tide"].startswith("v")


def test_unreachable_cluster_exit_code(tmp_path, cluster) -> None:
    from e2e.fixtures.cli import run_tide

    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "x",
                "clusters": [{"name": "x", "cluster": {"server": "https://127.0.0.1:1"}}],
                "contexts": [{"name": "x", "context": {"cluster": "x", "user": "x"}}],
                "users": [{"name": "x", "user": {"token": "t"}}],
            }
        )
    )
    res = run_tide(kubeconfig, "get", "ks", code=3)
    assert "cannot reach" in res.stderr


def test_get_watch_prints_changes(tide, namespace, cluster) -> None:
    import os
    import selectors
    import subprocess
    import time

    from e2e.fixtures.cli import TIDE

    create_pair(tide, namespace)
    proc = subprocess.Popen(
        [str(TIDE), "-n", namespace, "get", "ks", "-w"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "KUBECONFIG": str(cluster.kubeconfig), "NO_COLOR": "1"},
    )  # fmt: skip
    lines: list[str] = []
    sel = selectors.DefaultSelector()
    assert proc.stdout is not None
    sel.register(proc.stdout, selectors.EVENT_READ)

    def read_until(predicate, seconds: float = 20) -> None:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not predicate():
            if sel.select(timeout=0.5):
                lines.append(proc.stdout.readline().rstrip("\n"))  # type: ignore[union-attr]
        assert predicate(), lines

    try:
        read_until(lambda: any(line.startswith("apps ") for line in lines))
        assert lines[0].split()[:2] == ["NAME", "REVISION"]
        tide("-n", namespace, "suspend", "ks", "apps")
        read_until(lambda: any(line.split()[:2] == ["apps", "True"] for line in lines))
    finally:
        proc.terminate()
        proc.wait(10)


def test_create_tenant(tide, namespace, kubectl) -> None:
    """`tide create tenant` as `flux create tenant`: the Namespace, the ServiceAccount and its
    RoleBinding to the ClusterRole, labelled with the tenant; the ServiceAccount gets that role's
    rights in its namespace and nothing beyond it."""
    tenant_ns = f"{namespace}-t"
    try:
        out = tide("create", "tenant", "team-a", f"--with-namespace={tenant_ns}", "--cluster-role=view",
                   "--label=env=dev")  # fmt: skip
        assert "tenant team-a created or updated" in out.stdout + out.stderr
        for kind, name in (("namespace", tenant_ns), ("serviceaccount", "team-a"),
                           ("rolebinding", "team-a-reconciler")):  # fmt: skip
            obj = json.loads(kubectl("get", kind, name, "-n", tenant_ns, "-o", "json").stdout)
            labels = obj["metadata"]["labels"]
            assert labels["toolkit.fluxcd.io/tenant"] == "team-a" and labels["env"] == "dev", kind
        user = f"--as=system:serviceaccount:{tenant_ns}:team-a"
        can = [("list", "configmaps", tenant_ns), ("create", "configmaps", tenant_ns),
               ("list", "configmaps", namespace)]  # fmt: skip
        answers = [
            kubectl("auth", "can-i", verb, what, "-n", ns, user, check=False).stdout.strip()
            for verb, what, ns in can
        ]
        assert answers == ["yes", "no", "no"]
        # Applying it again changes nothing and succeeds (server-side apply).
        tide("create", "tenant", "team-a", f"--with-namespace={tenant_ns}", "--cluster-role=view",
             "--label=env=dev")  # fmt: skip
    finally:
        kubectl("delete", "namespace", tenant_ns, "--wait=false", check=False)
