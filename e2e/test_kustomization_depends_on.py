"""spec.dependsOn: wait for dependencies, say which one, report cycles on every member."""

from __future__ import annotations

import pytest

from e2e.fixtures.kustomize import get_obj, git_source, kustomization, wait_ks
from e2e.fixtures.source import apply

pytestmark = pytest.mark.e2e

CM = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {}\n"


def test_waits_for_dependency(git_server, flux_controllers, kubectl, namespace) -> None:  # type: ignore[no-untyped-def]
    repo = git_server.create_repo(
        f"deps-{namespace}", {"infra/cm.yaml": CM.format("infra"), "apps/cm.yaml": CM.format("app")}
    )
    flux_controllers()
    apply(kubectl, namespace, git_source("repo", repo.public_http_url),
          kustomization("apps", path="./apps", targetNamespace=namespace,
                        dependsOn=[{"name": "infra"}]))  # fmt: skip
    wait_ks(kubectl, namespace, "apps", status="False", reason="DependencyNotReady",
            contains=f"dependency '{namespace}/infra' not found")  # fmt: skip
    assert not get_obj(kubectl, namespace, "configmap", "app")
    apply(kubectl, namespace, kustomization("infra", path="./infra", targetNamespace=namespace))
    revision = f"main@sha1:{repo.head()}"
    wait_ks(kubectl, namespace, "infra", revision=revision)
    wait_ks(kubectl, namespace, "apps", revision=revision, timeout=30)
    assert get_obj(kubectl, namespace, "configmap", "app")


def test_cycle_is_reported_on_every_member(git_server, flux_controllers, kubectl, namespace) -> None:  # type: ignore[no-untyped-def]
    repo = git_server.create_repo(f"cycle-{namespace}", {"cm.yaml": CM.format("x")})
    flux_controllers()
    apply(kubectl, namespace, git_source("repo", repo.public_http_url),
          kustomization("a", targetNamespace=namespace, dependsOn=[{"name": "b"}]),
          kustomization("b", targetNamespace=namespace, dependsOn=[{"name": "c"}]),
          kustomization("c", targetNamespace=namespace, dependsOn=[{"name": "a"}]))  # fmt: skip
    for name in "abc":
        wait_ks(kubectl, namespace, name, status="False", reason="DependencyNotReady",
                contains="circular dependency detected")  # fmt: skip
