"""A Kustomization applies a Git path, prunes what leaves it, corrects drift, reports Flux's status."""

from __future__ import annotations

import json

import pytest

from e2e.fixtures.kustomize import get_obj, git_source, kustomization, wait_ks, wait_until
from e2e.fixtures.source import apply, condition, request_reconcile

pytestmark = pytest.mark.e2e


def configmap(name: str, **data: str) -> str:
    lines = "".join(f'  {k}: "{v}"\n' for k, v in data.items())
    return f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n{lines}"


def test_apply_prune_and_drift(git_server, flux_controllers, kubectl, namespace) -> None:  # type: ignore[no-untyped-def]
    repo = git_server.create_repo(f"apply-{namespace}", {
        "deploy/a.yaml": configmap("a", color="blue"),
        "deploy/b.yaml": configmap("b", color="red"),
    })  # fmt: skip
    flux_controllers()
    apply(kubectl, namespace,
          git_source("repo", repo.public_http_url),
          kustomization("app", path="./deploy", interval="3s", targetNamespace=namespace))  # fmt: skip
    revision = f"main@sha1:{repo.head()}"
    ks = wait_ks(kubectl, namespace, "app", revision=revision)
    assert condition(ks, "Ready")["message"] == f"Applied revision: {revision}"
    assert condition(ks, "Ready")["reason"] == "ReconciliationSucceeded"
    assert ks["status"]["lastAttemptedRevision"] == revision
    entries = {e["id"]: e["v"] for e in ks["status"]["inventory"]["entries"]}
    assert entries == {f"{namespace}_a__ConfigMap": "v1", f"{namespace}_b__ConfigMap": "v1"}

    a = get_obj(kubectl, namespace, "configmap", "a")
    assert a["data"] == {"color": "blue"}
    assert a["metadata"]["labels"] == {
        "kustomize.toolkit.fluxcd.io/name": "app",
        "kustomize.toolkit.fluxcd.io/namespace": namespace,
    }
    shown = json.loads(kubectl("get", "configmap", "a", "-n", namespace, "-o", "json",
                               "--show-managed-fields").stdout)  # fmt: skip
    managers = {m["manager"] for m in shown["metadata"]["managedFields"]}
    assert "kustomize-controller" in managers

    # Drift: a manual edit is reverted at the next interval.
    kubectl("patch", "configmap", "a", "-n", namespace, "--type=merge", "-p", '{"data":{"color":"green"}}')
    wait_until(lambda: get_obj(kubectl, namespace, "configmap", "a")["data"] == {"color": "blue"}, 30,
               "drift corrected")  # fmt: skip
    # A deleted object is recreated.
    kubectl("delete", "configmap", "b", "-n", namespace)
    wait_until(lambda: get_obj(kubectl, namespace, "configmap", "b"), 30, "deleted object recreated")

    # Removing a file prunes its object; a change is applied.
    repo.commit({"deploy/b.yaml": None, "deploy/a.yaml": configmap("a", color="yellow")})
    request_reconcile(kubectl, namespace, "repo")
    revision = f"main@sha1:{repo.head()}"
    ks = wait_ks(kubectl, namespace, "app", revision=revision)
    wait_until(lambda: not get_obj(kubectl, namespace, "configmap", "b"), 30, "b pruned")
    assert get_obj(kubectl, namespace, "configmap", "a")["data"] == {"color": "yellow"}
    assert [e["id"] for e in ks["status"]["inventory"]["entries"]] == [f"{namespace}_a__ConfigMap"]

    # Flux's status.history: one entry per distinct build, newest first.
    first_revision = ks["status"]["history"][-1]["metadata"]["revision"]
    assert [(h["metadata"]["revision"], h["lastReconciledStatus"]) for h in ks["status"]["history"]] == [
        (revision, "ReconciliationSucceeded"), (first_revision, "ReconciliationSucceeded")]  # fmt: skip
    assert first_revision != revision
    assert all(h["digest"].startswith("sha256:") for h in ks["status"]["history"])
    assert ks["status"]["history"][1]["totalReconciliations"] >= 2  # the interval reconciles in between

    events = kubectl("get", "events", "-n", namespace, "-o", "json").stdout
    assert f"ConfigMap/{namespace}/b deleted" in events
    assert f"ConfigMap/{namespace}/a configured" in events


def test_broken_kustomization_keeps_last_applied_state(git_server, flux_controllers, kubectl,  # type: ignore[no-untyped-def]
                                                       namespace) -> None:  # fmt: skip
    repo = git_server.create_repo(f"broken-{namespace}", {
        "app/kustomization.yaml": "resources:\n- cm.yaml\n",
        "app/cm.yaml": configmap("kept", v="1"),
    })  # fmt: skip
    flux_controllers()
    apply(kubectl, namespace, git_source("repo", repo.public_http_url),
          kustomization("app", path="./app", targetNamespace=namespace))  # fmt: skip
    good = f"main@sha1:{repo.head()}"
    wait_ks(kubectl, namespace, "app", revision=good)

    repo.commit({"app/kustomization.yaml": "resources:\n- cm.yaml\n- missing.yaml\n"})
    request_reconcile(kubectl, namespace, "repo")
    bad = f"main@sha1:{repo.head()}"
    ks = wait_ks(kubectl, namespace, "app", status="False", revision=bad, contains="missing.yaml")
    assert condition(ks, "Ready")["reason"] == "BuildFailed"
    assert ks["status"]["lastAppliedRevision"] == good
    assert get_obj(kubectl, namespace, "configmap", "kept")["data"] == {"v": "1"}


def test_path_escaping_the_artifact_is_refused(git_server, flux_controllers, kubectl, namespace) -> None:  # type: ignore[no-untyped-def]
    repo = git_server.create_repo(f"escape-{namespace}", {
        "app/kustomization.yaml": "resources:\n- ../../../../../../etc/passwd\n",
    })  # fmt: skip
    flux_controllers()
    apply(kubectl, namespace, git_source("repo", repo.public_http_url),
          kustomization("app", path="./app", targetNamespace=namespace))  # fmt: skip
    ks = wait_ks(kubectl, namespace, "app", status="False", contains="outside the source artifact root")
    assert condition(ks, "Ready")["reason"] == "BuildFailed"


def test_a_service_account_without_rights_applies_nothing(git_server, flux_controllers, kubectl,  # type: ignore[no-untyped-def]
                                                           namespace) -> None:  # fmt: skip
    """serviceAccountName is impersonated: a ServiceAccount no RBAC grants anything is Forbidden."""
    repo = git_server.create_repo(f"sa-{namespace}", {"cm.yaml": configmap("x", v="1")})
    flux_controllers()
    apply(kubectl, namespace, git_source("repo", repo.public_http_url),
          kustomization("app", targetNamespace=namespace, serviceAccountName="deployer"))  # fmt: skip
    ks = wait_ks(kubectl, namespace, "app", status="False", contains="forbidden")
    message = condition(ks, "Ready")["message"]
    assert f"ConfigMap/{namespace}/x" in message and f"system:serviceaccount:{namespace}:deployer" in message
    assert not get_obj(kubectl, namespace, "configmap", "x")


def test_a_refused_object_applies_nothing_of_its_stage(git_server, flux_controllers, kubectl,  # type: ignore[no-untyped-def]
                                                        namespace) -> None:  # fmt: skip
    """Flux's all-or-nothing stages: one object the API server refuses (an unknown kind, an invalid
    field) keeps every object of its stage, and of the stages after it, at the last good state."""
    provider = ("apiVersion: notification.toolkit.fluxcd.io/v1beta3\nkind: Provider\nmetadata:\n"
                "  name: hook\nspec:\n  type: generic\n  address: http://127.0.0.1:9/\n")  # fmt: skip
    widget = "apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w\n"

    def service(port: int) -> str:
        return (f"apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  ports:\n"
                f"  - port: {port}\n")  # fmt: skip

    repo = git_server.create_repo(f"stages-{namespace}", {
        "app/a.yaml": configmap("a", v="1"), "app/b.yaml": configmap("b", v="1"),
    })  # fmt: skip
    flux_controllers()
    apply(kubectl, namespace, git_source("repo", repo.public_http_url),
          kustomization("app", path="./app", interval="1h", targetNamespace=namespace))  # fmt: skip
    good = f"main@sha1:{repo.head()}"
    wait_ks(kubectl, namespace, "app", revision=good)
    kept = {f"{namespace}_a__ConfigMap", f"{namespace}_b__ConfigMap"}

    def inventory(ks: dict) -> set[str]:  # type: ignore[type-arg]
        return {e["id"] for e in ks["status"]["inventory"]["entries"]}

    # An unknown kind among the custom resources: neither the Provider beside it nor the later
    # stage (the changed and the new ConfigMap) is written.
    repo.commit({"app/a.yaml": configmap("a", v="2"), "app/c.yaml": configmap("c", v="1"),
                 "app/provider.yaml": provider, "app/widget.yaml": widget})  # fmt: skip
    request_reconcile(kubectl, namespace, "repo")
    bad = f"main@sha1:{repo.head()}"
    ks = wait_ks(kubectl, namespace, "app", status="False", revision=bad, contains="Widget")
    ready = condition(ks, "Ready")
    assert ready["reason"] == "ReconciliationFailed"
    assert f'Widget/{namespace}/w dry-run failed: no matches for kind "Widget"' in ready["message"]
    assert not get_obj(kubectl, namespace, "provider.notification.toolkit.fluxcd.io", "hook")
    assert get_obj(kubectl, namespace, "configmap", "a")["data"] == {"v": "1"}
    assert not get_obj(kubectl, namespace, "configmap", "c")
    assert inventory(ks) == kept
    assert ks["status"]["lastAppliedRevision"] == good

    # An invalid field in the last stage: the custom resources' stage now passes and is applied
    # (and tracked, so a revert prunes it); nothing of the last stage is.
    repo.commit({"app/widget.yaml": None, "app/svc.yaml": service(70000)})
    request_reconcile(kubectl, namespace, "repo")
    bad = f"main@sha1:{repo.head()}"
    ks = wait_ks(kubectl, namespace, "app", status="False", revision=bad, contains="Service/")
    message = condition(ks, "Ready")["message"]
    assert f"Service/{namespace}/web dry-run failed (Invalid):" in message
    assert "70000" in message
    assert get_obj(kubectl, namespace, "provider.notification.toolkit.fluxcd.io", "hook")
    assert get_obj(kubectl, namespace, "configmap", "a")["data"] == {"v": "1"}
    assert not get_obj(kubectl, namespace, "configmap", "c")
    assert inventory(ks) == kept | {f"{namespace}_hook_notification.toolkit.fluxcd.io_Provider"}

    # Fixed in Git: everything applies.
    repo.commit({"app/svc.yaml": service(80)})
    request_reconcile(kubectl, namespace, "repo")
    fixed = f"main@sha1:{repo.head()}"
    ks = wait_ks(kubectl, namespace, "app", revision=fixed)
    assert get_obj(kubectl, namespace, "configmap", "a")["data"] == {"v": "2"}
    assert get_obj(kubectl, namespace, "configmap", "c")
    assert get_obj(kubectl, namespace, "service", "web")
    assert inventory(ks) == kept | {f"{namespace}_c__ConfigMap", f"{namespace}_web__Service",
                                    f"{namespace}_hook_notification.toolkit.fluxcd.io_Provider"}  # fmt: skip
