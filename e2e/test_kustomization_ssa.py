"""Flux's per-object apply policies: ssa annotations, prune: disabled, force, spec.ignore, deletionPolicy."""

from __future__ import annotations

import time

import pytest

from e2e.fixtures.kustomize import get_obj, git_source, kustomization, wait_ks, wait_reconciles, wait_until
from e2e.fixtures.source import apply, condition

pytestmark = pytest.mark.e2e


def cm(name: str, value: str, annotations: dict[str, str] | None = None, immutable: bool = False) -> str:
    ann = "".join(f"    {k}: {v}\n" for k, v in (annotations or {}).items())
    text = f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n"
    if ann:
        text += f"  annotations:\n{ann}"
    if immutable:
        text += "immutable: true\n"
    return text + f'data:\n  v: "{value}"\n'


def refresh(kubectl, namespace: str) -> None:  # type: ignore[no-untyped-def]
    kubectl("annotate", "-n", namespace, "--overwrite", "gitrepository/repo",
            f"reconcile.fluxcd.io/requestedAt={time.time_ns()}")  # fmt: skip


def test_ssa_policies_and_prune_disabled(git_server, flux_controllers, kubectl, namespace) -> None:  # type: ignore[no-untyped-def]
    repo = git_server.create_repo(f"ssa-{namespace}", {
        "once.yaml": cm("once", "1", {"kustomize.toolkit.fluxcd.io/ssa": "IfNotPresent"}),
        "ignored.yaml": cm("ignored", "1", {"kustomize.toolkit.fluxcd.io/ssa": "Ignore"}),
        "keep.yaml": cm("keep", "1", {"kustomize.toolkit.fluxcd.io/prune": "disabled"}),
        "merge.yaml": cm("merge", "1", {"kustomize.toolkit.fluxcd.io/ssa": "Merge"}),
    })  # fmt: skip
    controllers = flux_controllers()
    apply(kubectl, namespace, git_source("repo", repo.public_http_url),
          kustomization("app", interval="2s", targetNamespace=namespace))  # fmt: skip
    wait_ks(kubectl, namespace, "app", revision=f"main@sha1:{repo.head()}")
    assert not get_obj(kubectl, namespace, "configmap", "ignored")
    kubectl("patch", "configmap", "once", "-n", namespace, "--type=merge", "-p", '{"data":{"v":"mine"}}')
    wait_reconciles(controllers.kustomize.metrics_url, namespace, "app")  # IfNotPresent never overwrites
    assert get_obj(kubectl, namespace, "configmap", "once")["data"] == {"v": "mine"}

    repo.commit({"keep.yaml": None, "once.yaml": None})
    refresh(kubectl, namespace)
    wait_ks(kubectl, namespace, "app", revision=f"main@sha1:{repo.head()}")
    wait_until(lambda: not get_obj(kubectl, namespace, "configmap", "once"), 30, "once pruned")
    assert get_obj(kubectl, namespace, "configmap", "keep")  # prune: disabled


def test_force_recreates_immutable_objects(git_server, flux_controllers, kubectl, namespace) -> None:  # type: ignore[no-untyped-def]
    repo = git_server.create_repo(f"force-{namespace}", {"frozen.yaml": cm("frozen", "1", immutable=True)})
    flux_controllers()
    apply(kubectl, namespace, git_source("repo", repo.public_http_url),
          kustomization("app", targetNamespace=namespace, retryInterval="2s"))  # fmt: skip
    wait_ks(kubectl, namespace, "app", revision=f"main@sha1:{repo.head()}")
    uid = get_obj(kubectl, namespace, "configmap", "frozen")["metadata"]["uid"]

    repo.commit({"frozen.yaml": cm("frozen", "2", immutable=True)})
    refresh(kubectl, namespace)
    ks = wait_ks(kubectl, namespace, "app", status="False", contains="immutable")
    assert condition(ks, "Ready")["reason"] == "ReconciliationFailed"
    assert get_obj(kubectl, namespace, "configmap", "frozen")["data"] == {"v": "1"}

    repo.commit(
        {"frozen.yaml": cm("frozen", "3", {"kustomize.toolkit.fluxcd.io/force": "Enabled"}, immutable=True)}
    )
    refresh(kubectl, namespace)
    wait_ks(kubectl, namespace, "app", revision=f"main@sha1:{repo.head()}")
    frozen = get_obj(kubectl, namespace, "configmap", "frozen")
    assert frozen["data"] == {"v": "3"} and frozen["metadata"]["uid"] != uid


def test_ignore_rules_leave_fields_alone(git_server, flux_controllers, kubectl, namespace) -> None:  # type: ignore[no-untyped-def]
    dep = """apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels:
    tier: web
spec:
  replicas: 1
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
      - name: web
        image: nginx:1.27
"""
    repo = git_server.create_repo(f"ignore-{namespace}", {"web.yaml": dep})
    controllers = flux_controllers()
    ignore = [{"paths": ["/spec/replicas"], "target": {"kind": "Deployment"}}]
    apply(kubectl, namespace, git_source("repo", repo.public_http_url),
          kustomization("app", interval="2s", targetNamespace=namespace, ignore=ignore))  # fmt: skip
    wait_ks(kubectl, namespace, "app", revision=f"main@sha1:{repo.head()}")
    kubectl("scale", "deployment", "web", "-n", namespace, "--replicas=3")  # e.g. an HPA
    kubectl("label", "deployment", "web", "-n", namespace, "--overwrite", "tier=hacked")
    wait_until(lambda: get_obj(kubectl, namespace, "deployment", "web")["metadata"]["labels"]["tier"]
               == "web",
               30, "label drift corrected")  # fmt: skip
    wait_reconciles(controllers.kustomize.metrics_url, namespace, "app")  # replicas left alone meanwhile
    assert get_obj(kubectl, namespace, "deployment", "web")["spec"]["replicas"] == 3


def test_deletion_policy(git_server, flux_controllers, kubectl, namespace) -> None:  # type: ignore[no-untyped-def]
    repo = git_server.create_repo(f"delete-{namespace}", {
        "a/cm.yaml": cm("orphaned", "1"), "b/cm.yaml": cm("deleted", "1"),
    })  # fmt: skip
    flux_controllers()
    apply(kubectl, namespace, git_source("repo", repo.public_http_url),
          kustomization("orphan", path="./a", targetNamespace=namespace, deletionPolicy="Orphan"),
          kustomization("mirror", path="./b", targetNamespace=namespace))  # fmt: skip
    wait_ks(kubectl, namespace, "orphan")
    wait_ks(kubectl, namespace, "mirror")
    kubectl("delete", "kustomization", "orphan", "mirror", "-n", namespace, "--timeout=60s")
    assert get_obj(kubectl, namespace, "configmap", "orphaned")
    assert not get_obj(kubectl, namespace, "configmap", "deleted")
