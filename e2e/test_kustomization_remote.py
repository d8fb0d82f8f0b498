"""spec.kubeConfig.secretRef: a Kustomization built here applies, prunes and health-checks on another
cluster (a second control plane started by the test), survives that cluster going away, and refuses
kubeconfigs that would run commands in the controller."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from e2e.cluster import ControlPlane, free_port
from e2e.fixtures.cluster import run_kubectl
from e2e.fixtures.kustomize import configmap_manifest as configmap
from e2e.fixtures.kustomize import get_obj, git_source, kustomization, wait_ks
from e2e.fixtures.source import apply, condition, request_reconcile

pytestmark = pytest.mark.e2e


def kubeconfig_secret(name: str, kubeconfig: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name},
            "data": {"value": base64.b64encode(kubeconfig.encode()).decode()}}  # fmt: skip


def remote_get(plane: ControlPlane, namespace: str, kind: str, name: str) -> dict[str, Any]:
    out = run_kubectl(plane.kubeconfig, "get", kind, name, "-n", namespace, "-o", "json", check=False)
    return json.loads(out.stdout) if out.returncode == 0 else {}


def test_a_kustomization_applies_to_a_remote_cluster(  # type: ignore[no-untyped-def]
    empty_control_plane: ControlPlane, git_server, flux_controllers, kubectl, namespace, tmp_path: Path
) -> None:
    remote = empty_control_plane
    repo = git_server.create_repo(f"remote-{namespace}", {
        "ns.yaml": "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: apps\n",
        "a.yaml": configmap("a", "apps", v="1"),
        "b.yaml": configmap("b", "apps", v="1"),
    })  # fmt: skip
    admin = remote.kubeconfig.read_text()
    # First a kubeconfig whose server does not answer: Ready=False saying so; then the right one,
    # picked up from the changed Secret.
    unreachable = admin.replace(remote.server, f"https://127.0.0.1:{free_port()}")
    flux_controllers()
    ref = {"secretRef": {"name": "remote"}}
    apply(kubectl, namespace, kubeconfig_secret("remote", unreachable),
          git_source("repo", repo.public_http_url),
          kustomization("remote", wait=True, retryInterval="3s", kubeConfig=ref))  # fmt: skip
    ks = wait_ks(kubectl, namespace, "remote", status="False", contains="cannot reach the cluster at")
    assert condition(ks, "Ready")["reason"] == "ReconciliationFailed"
    apply(kubectl, namespace, kubeconfig_secret("remote", admin))
    revision = f"main@sha1:{repo.head()}"
    ks = wait_ks(kubectl, namespace, "remote", revision=revision)
    assert condition(ks, "Healthy")["status"] == "True"
    assert remote_get(remote, "apps", "configmap", "a")["data"] == {"v": "1"}
    assert not get_obj(kubectl, "", "namespace", "apps") or not get_obj(kubectl, "apps", "configmap", "a")

    # Prune on the remote cluster.
    repo.commit({"b.yaml": None})
    request_reconcile(kubectl, namespace, "repo")
    wait_ks(kubectl, namespace, "remote", revision=f"main@sha1:{repo.head()}")
    assert not remote_get(remote, "apps", "configmap", "b")

    # The remote API server goes away: Ready=False, the local controller keeps serving others.
    remote.stop_apiserver()
    request_reconcile(kubectl, namespace, "remote", kind="kustomization")
    down = f"cannot reach the cluster at {remote.server}"
    wait_ks(kubectl, namespace, "remote", status="False", contains=down)
    local = git_server.create_repo(f"local-{namespace}", {"c.yaml": configmap("c", namespace, v="1")})
    apply(kubectl, namespace, git_source("local", local.public_http_url),
          kustomization("local", source="local"))  # fmt: skip
    wait_ks(kubectl, namespace, "local", revision=f"main@sha1:{local.head()}")
    # ... and comes back: the next retry applies a change made meanwhile.
    repo.commit({"a.yaml": configmap("a", "apps", v="2")})
    request_reconcile(kubectl, namespace, "repo")
    remote.start_apiserver()
    wait_ks(kubectl, namespace, "remote", revision=f"main@sha1:{repo.head()}")
    assert remote_get(remote, "apps", "configmap", "a")["data"] == {"v": "2"}

    # A kubeconfig with an exec credential plugin is refused; the command never runs.
    marker = tmp_path / "exec-ran"
    hostile = yaml.safe_load(admin)
    plugin = {"apiVersion": "client.authentication.k8s.io/v1", "command": "/bin/sh",
              "args": ["-c", f"touch {marker}"]}  # fmt: skip
    hostile["users"][0]["user"] = {"exec": plugin}
    apply(kubectl, namespace, kubeconfig_secret("hostile", yaml.safe_dump(hostile)),
          kustomization("hostile", kubeConfig={"secretRef": {"name": "hostile"}}))  # fmt: skip
    ks = wait_ks(kubectl, namespace, "hostile", status="False", contains="exec credential plugin")
    assert "--insecure-kubeconfig-exec" in condition(ks, "Ready")["message"]
    assert not marker.exists()
