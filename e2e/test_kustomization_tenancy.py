"""Multi-tenancy as Flux lays it out (fluxcd/flux2-multi-tenancy): a platform Kustomization creates
each tenant (Namespace, ServiceAccount, RoleBinding, GitRepository, Kustomization impersonating the
ServiceAccount), and RBAC, not the controller, decides what a tenant may apply."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from e2e.fixtures.kustomize import (
    api_requests,
    get_obj,
    kustomization,
    reconcile_count,
    scrape,
    wait_ks,
    wait_until,
)
from e2e.fixtures.kustomize import (
    configmap_manifest as configmap,
)
from e2e.fixtures.source import apply, condition, gitrepository, request_reconcile

pytestmark = pytest.mark.e2e

RUN_LABEL = "tide.test/tenancy"


def labelled(obj: dict[str, Any], namespace: str, run: str) -> dict[str, Any]:
    obj["metadata"].update(namespace=namespace, labels={RUN_LABEL: run})
    return obj


def tenant(name: str, run: str, url: str, account: str, impersonate: bool, interval: str) -> str:
    """What `flux create tenant` writes, plus the tenant's source and its Kustomization (which
    confines the tenant to its namespace with targetNamespace, unless it relies on RBAC alone)."""
    spec: dict[str, Any] = {}
    if impersonate:
        spec.update(serviceAccountName=account, targetNamespace=name)
    docs = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}},
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": account, "namespace": name}},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": f"{account}-admin", "namespace": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "admin"},
            "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": name}],
        },
        labelled(gitrepository("tenant", url, interval="10m"), name, run),
        labelled(kustomization("tenant", source="tenant", interval=interval, **spec), name, run),
    ]
    return yaml.safe_dump_all(docs)


def test_flux_multi_tenancy_layout(  # type: ignore[no-untyped-def]
    git_server, source_controller, start_controller, kubectl, namespace
) -> None:
    a, b = f"{namespace}-a", f"{namespace}-b"
    repo_a = git_server.create_repo(f"tenant-{a}", {"hello.yaml": configmap("hello", v="1")})
    repo_b = git_server.create_repo(f"tenant-{b}", {"hello.yaml": configmap("hello", b, v="1")})
    # Tenant a names its ServiceAccount; tenant b relies on --default-service-account.
    platform = git_server.create_repo(f"platform-{namespace}", {
        "tenants/a.yaml": tenant(a, namespace, repo_a.public_http_url, "reconciler", True, "10m"),
        "tenants/b.yaml": tenant(b, namespace, repo_b.public_http_url, "tenant-default", False, "2s"),
    })  # fmt: skip
    # The platform's own Kustomization impersonates a cluster-admin ServiceAccount, as Flux's
    # lockdown has it (with --default-service-account, nothing applies as the controller itself).
    binding = f"{namespace}-platform"
    kubectl("create", "serviceaccount", "platform", "-n", namespace)
    kubectl("create", "clusterrolebinding", binding, "--clusterrole=cluster-admin",
            f"--serviceaccount={namespace}:platform")  # fmt: skip
    selector = f"--watch-label-selector={RUN_LABEL}={namespace}"
    source = source_controller("--watch-all-namespaces=true", selector)
    controller = start_controller(
        "kustomize", "--requeue-dependency=2s", f"--source-storage-addr={source.address}", selector,
        "--default-service-account=tenant-default", "--no-cross-namespace-refs=true",
    )  # fmt: skip
    try:
        apply(kubectl, namespace,
              labelled(gitrepository("platform", platform.public_http_url), namespace, namespace),
              labelled(kustomization("platform", path="./tenants", source="platform", interval="10m",
                                     serviceAccountName="platform"), namespace, namespace))  # fmt: skip
        wait_ks(kubectl, namespace, "platform", revision=f"main@sha1:{platform.head()}")
        ks_a = wait_ks(kubectl, a, "tenant", revision=f"main@sha1:{repo_a.head()}")
        wait_ks(kubectl, b, "tenant", revision=f"main@sha1:{repo_b.head()}")
        assert get_obj(kubectl, a, "configmap", "hello")["data"] == {"v": "1"}
        assert get_obj(kubectl, b, "configmap", "hello")["data"] == {"v": "1"}
        assert [e["id"] for e in ks_a["status"]["inventory"]["entries"]] == [f"{a}_hello__ConfigMap"]

        # An idle reconcile of an impersonated Kustomization stays (almost) free of API requests.
        url = controller.metrics_url
        wait_until(lambda: reconcile_count(scrape(url), b, "tenant") >= 3, 60, "tenant b reconciles")
        before = scrape(url)
        start = reconcile_count(before, b, "tenant")
        wait_until(lambda: reconcile_count(scrape(url), b, "tenant") >= start + 3, 60, "3 idle reconciles")
        after = scrape(url)
        reconciles = reconcile_count(after, b, "tenant") - reconcile_count(before, b, "tenant")
        requests = {verb: n - api_requests(before).get(verb, 0) for verb, n in api_requests(after).items()}
        print(f"impersonated no-op: {reconciles:.0f} reconciles, requests by verb {requests}")
        assert sum(requests.values()) / reconciles <= 2, requests

        # A tenant's Git change is applied with its identity.
        repo_a.commit({"hello.yaml": configmap("hello", v="2")})
        request_reconcile(kubectl, a, "tenant")
        wait_ks(kubectl, a, "tenant", revision=f"main@sha1:{repo_a.head()}")
        hello = get_obj(kubectl, a, "configmap", "hello")
        assert hello["data"] == {"v": "2"}

        # A ClusterRole is beyond tenant a's RBAC: Forbidden, naming it, on tenant a only.
        role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                "metadata": {"name": f"{a}-escalate"}, "rules": []}  # fmt: skip
        repo_a.commit({"role.yaml": yaml.safe_dump(role), "hello.yaml": configmap("hello", v="3")})
        request_reconcile(kubectl, a, "tenant")
        ks_a = wait_ks(kubectl, a, "tenant", status="False", contains="forbidden")
        message = condition(ks_a, "Ready")["message"]
        assert f"ClusterRole/{a}-escalate" in message
        assert f"system:serviceaccount:{a}:reconciler" in message
        assert not get_obj(kubectl, "", "clusterrole", f"{a}-escalate")
        assert get_obj(kubectl, a, "configmap", "hello")["data"] == {"v": "2"}  # nothing half-applied

        # An object in the other tenant's namespace: Forbidden for tenant b's default ServiceAccount.
        repo_b.commit({"intrude.yaml": configmap("intrude", namespace=a, v="1"),
                       "hello.yaml": configmap("hello", b, v="2")})  # fmt: skip
        request_reconcile(kubectl, b, "tenant")
        ks_b = wait_ks(kubectl, b, "tenant", status="False", contains="forbidden")
        message = condition(ks_b, "Ready")["message"]
        assert f"ConfigMap/{a}/intrude" in message
        assert f"system:serviceaccount:{b}:tenant-default" in message
        assert not get_obj(kubectl, a, "configmap", "intrude")
        assert get_obj(kubectl, b, "configmap", "hello")["data"] == {"v": "1"}
        assert [e["id"] for e in ks_b["status"]["inventory"]["entries"]] == [f"{b}_hello__ConfigMap"]
        # The platform is unaffected.
        platform_ks = wait_ks(kubectl, namespace, "platform", revision=f"main@sha1:{platform.head()}")
        assert condition(platform_ks, "Ready")["status"] == "True"

        # Once the tenant's change is within its rights, it converges; prune runs as the tenant.
        repo_b.commit({"intrude.yaml": None})
        request_reconcile(kubectl, b, "tenant")
        wait_ks(kubectl, b, "tenant", revision=f"main@sha1:{repo_b.head()}")
        assert get_obj(kubectl, b, "configmap", "hello")["data"] == {"v": "2"}

        # --no-cross-namespace-refs: a Kustomization in tenant a naming tenant b's source.
        cross = kustomization("cross", source="tenant", interval="10m", serviceAccountName="reconciler")
        labelled(cross, a, namespace)
        cross["spec"]["sourceRef"]["namespace"] = b
        apply(kubectl, a, cross)
        ks = wait_ks(kubectl, a, "cross", status="False", reason="AccessDenied")
        assert "cross-namespace references are disabled" in condition(ks, "Ready")["message"]
        assert condition(ks, "Stalled")["status"] == "True"
    finally:
        # Deleting the tenants' Kustomizations prunes as each tenant, while the controllers still run.
        for ns in (a, b):
            kubectl("delete", "kustomizations.kustomize.toolkit.fluxcd.io", "--all", "-n", ns,
                    "--wait=true", "--timeout=60s", check=False)  # fmt: skip
        kubectl("delete", "kustomization.kustomize.toolkit.fluxcd.io", "platform", "-n", namespace,
                "--wait=true", "--timeout=60s", check=False)  # fmt: skip
        kubectl("delete", "namespace", a, b, "--wait=false", check=False)
        kubectl("delete", "clusterrolebinding", binding, check=False)
        print(json.dumps({"tenants": [a, b]}))
