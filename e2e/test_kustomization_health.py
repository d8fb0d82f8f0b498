"""spec.wait / healthChecks / healthCheckExprs against the real control plane (kwok runs the Pods)."""

from __future__ import annotations

import pytest

from e2e.fixtures.kustomize import deployment, get_obj, git_source, kustomization, wait_ks
from e2e.fixtures.source import apply, condition

pytestmark = pytest.mark.e2e

DEPLOYMENT = deployment("web", 2)


def test_wait_until_deployment_available(git_server, flux_controllers, kubectl, namespace) -> None:  # type: ignore[no-untyped-def]
    repo = git_server.create_repo(f"health-{namespace}", {"web.yaml": DEPLOYMENT})
    flux_controllers()
    apply(kubectl, namespace, git_source("repo", repo.public_http_url),
          kustomization("app", targetNamespace=namespace,
                        healthChecks=[{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web",
                                       "namespace": namespace}]))  # fmt: skip
    ks = wait_ks(kubectl, namespace, "app", revision=f"main@sha1:{repo.head()}")
    healthy = condition(ks, "Healthy")
    assert healthy["status"] == "True" and healthy["reason"] == "Succeeded"
    dep = get_obj(kubectl, namespace, "deployment", "web")
    # Ready only once the Deployment was Available: kstatus' rule for Deployments.
    assert dep["status"].get("availableReplicas") == 2


def test_failing_health_check_names_the_object(git_server, flux_controllers, kubectl, namespace) -> None:  # type: ignore[no-untyped-def]
    cm = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: gate\ndata:\n  state: pending\n"
    repo = git_server.create_repo(f"cel-{namespace}", {"gate.yaml": cm})
    flux_controllers()
    exprs = [{"apiVersion": "v1", "kind": "ConfigMap",
              "current": "self.data.state == 'ready'", "failed": "self.data.state == 'broken'"}]  # fmt: skip
    apply(kubectl, namespace, git_source("repo", repo.public_http_url),
          kustomization("app", targetNamespace=namespace, wait=True, timeout="5s", retryInterval="2s",
                        healthCheckExprs=exprs))  # fmt: skip
    ks = wait_ks(kubectl, namespace, "app", status="False", reason="HealthCheckFailed",
                 contains=f"ConfigMap/{namespace}/gate status: 'InProgress'")  # fmt: skip
    assert condition(ks, "Healthy")["status"] == "False"

    repo.commit({"gate.yaml": cm.replace("pending", "broken")})
    kubectl(
        "annotate", "-n", namespace, "--overwrite", "gitrepository/repo", "reconcile.fluxcd.io/requestedAt=1"
    )
    wait_ks(kubectl, namespace, "app", status="False", reason="HealthCheckFailed",
            contains=f"ConfigMap/{namespace}/gate status: 'Failed'")  # fmt: skip

    repo.commit({"gate.yaml": cm.replace("pending", "ready")})
    kubectl(
        "annotate", "-n", namespace, "--overwrite", "gitrepository/repo", "reconcile.fluxcd.io/requestedAt=2"
    )
    ks = wait_ks(kubectl, namespace, "app", revision=f"main@sha1:{repo.head()}")
    assert condition(ks, "Healthy")["status"] == "True"


def test_optional_cel_syntax(git_server, flux_controllers, kubectl, namespace) -> None:  # type: ignore[no-untyped-def]
    """The cheatsheet's form: a field that may be absent read with `.?` and `orValue`."""
    cm = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: gate\ndata:\n  state: ready\n"
    repo = git_server.create_repo(f"optcel-{namespace}", {"gate.yaml": cm})
    flux_controllers()
    exprs = [{"apiVersion": "v1", "kind": "ConfigMap",
              "current": "data.?state.orValue('') == 'ready' && metadata.?labels[?'tier'].orValue('') == ''",
              "failed": "metadata.?annotations[?'broken'].orValue('') == 'true'"}]  # fmt: skip
    apply(kubectl, namespace, git_source("repo", repo.public_http_url),
          kustomization("app", targetNamespace=namespace, wait=True, timeout="30s",
                        healthCheckExprs=exprs))  # fmt: skip
    ks = wait_ks(kubectl, namespace, "app", revision=f"main@sha1:{repo.head()}")
    assert condition(ks, "Healthy")["status"] == "True"


def test_invalid_cel_expression_stalls(git_server, flux_controllers, kubectl, namespace) -> None:  # type: ignore[no-untyped-def]
    repo = git_server.create_repo(
        f"badcel-{namespace}", {"gate.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: g\n"}
    )
    flux_controllers()
    apply(kubectl, namespace, git_source("repo", repo.public_http_url),
          kustomization("app", targetNamespace=namespace, wait=True,
                        healthCheckExprs=[{"apiVersion": "v1", "kind": "ConfigMap",
                                           "current": "self.data =="}]))  # fmt: skip
    ks = wait_ks(kubectl, namespace, "app", status="False", reason="InvalidCELExpression")
    assert condition(ks, "Stalled")["status"] == "True"


def test_new_revision_cancels_health_wait(git_server, flux_controllers, kubectl, namespace) -> None:  # type: ignore[no-untyped-def]
    """Flux's CancelHealthCheckOnNewRevision feature gate (off by default, as in Flux)."""
    cm = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: gate\ndata:\n  state: pending\n"
    repo = git_server.create_repo(f"cancel-{namespace}", {"gate.yaml": cm})
    flux_controllers("--feature-gates=CancelHealthCheckOnNewRevision=true")
    exprs = [{"apiVersion": "v1", "kind": "ConfigMap", "current": "self.data.state == 'ready'"}]
    apply(kubectl, namespace, git_source("repo", repo.public_http_url),
          kustomization("app", targetNamespace=namespace, wait=True, timeout="10m",
                        healthCheckExprs=exprs))  # fmt: skip
    wait_ks(kubectl, namespace, "app", status="Unknown", contains="health checks")
    repo.commit({"gate.yaml": cm.replace("pending", "ready")})
    kubectl(
        "annotate", "-n", namespace, "--overwrite", "gitrepository/repo", "reconcile.fluxcd.io/requestedAt=1"
    )
    # Well before the 10m timeout: the wait for the old revision was canceled.
    ks = wait_ks(kubectl, namespace, "app", revision=f"main@sha1:{repo.head()}", timeout=60)
    assert condition(ks, "Healthy")["status"] == "True"


def test_health_check_on_an_object_applied_elsewhere(
    git_server, flux_controllers, kubectl, namespace
) -> None:  # type: ignore[no-untyped-def]
    repo = git_server.create_repo(
        f"foreign-{namespace}", {"cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n"}
    )
    kubectl("apply", "-n", namespace, "-f", "-", input=DEPLOYMENT)  # e.g. a Helm release's Deployment
    flux_controllers()
    apply(kubectl, namespace, git_source("repo", repo.public_http_url),
          kustomization("app", targetNamespace=namespace,
                        healthChecks=[{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web",
                                       "namespace": namespace}]))  # fmt: skip
    ks = wait_ks(kubectl, namespace, "app", revision=f"main@sha1:{repo.head()}")
    assert condition(ks, "Healthy")["status"] == "True"
