"""status.inventory of a HelmRelease from its release manifest and chart CRDs (helm-controller's)."""

from __future__ import annotations

import pytest

from tide.controllers.helm.inventory import (
    InventoryBuildFailed,
    release_inventory,
    release_manifest_objects,
    unscoped_kinds,
)

MANIFEST = """---
apiVersion: v1
kind: Service
metadata: {name: app}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: app}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: "system:app"
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: elsewhere
  namespace: other
---
apiVersion: batch/v1
kind: Job
metadata:
  name: app-smoke
  annotations: {helm.sh/hook: test}
---
apiVersion: v1
kind: ConfigMapList
items:
- apiVersion: v1
  kind: ConfigMap
  metadata: {name: listed}
"""

CRD_FILE = {
    "name": "crds/widgets.yaml",
    "data": "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\n"
    "metadata: {name: widgets.example.com}\n",
}

SCOPES: dict[tuple[str, str], bool | str] = {
    ("v1", "Service"): True,
    ("apps/v1", "Deployment"): True,
    ("v1", "ConfigMap"): True,
    ("rbac.authorization.k8s.io/v1", "ClusterRole"): False,
}


def entries(manifest: str, scopes: dict[tuple[str, str], bool | str], crds: list[dict[str, str]]):  # type: ignore[no-untyped-def]
    built = release_inventory(release_manifest_objects(manifest), "team", scopes, crds)
    return built.inventory.to_status()["entries"], built.warnings


def test_manifest_objects_and_crds_in_order_hooks_left_out() -> None:
    found, warnings = entries(MANIFEST, SCOPES, [CRD_FILE])
    assert found == [
        {"id": "team_app__Service", "v": "v1"},
        {"id": "team_app_apps_Deployment", "v": "v1"},
        {"id": "_system__app_rbac.authorization.k8s.io_ClusterRole", "v": "v1"},
        {"id": "other_elsewhere__ConfigMap", "v": "v1"},
        {"id": "team_listed__ConfigMap", "v": "v1"},
        {"id": "_widgets.example.com_apiextensions.k8s.io_CustomResourceDefinition", "v": "v1"},
    ]
    assert warnings == []


def test_only_objects_without_namespace_need_their_scope() -> None:
    assert unscoped_kinds(release_manifest_objects(MANIFEST)) == [
        ("apps/v1", "Deployment"),
        ("rbac.authorization.k8s.io/v1", "ClusterRole"),
        ("v1", "ConfigMap"),
        ("v1", "Service"),
    ]


@pytest.mark.parametrize(
    ("scope", "entry", "warning"),
    [
        ("404 NotFound: no matches", "_w_example.com_Widget", "no matches"),
        (None, "_w_example.com_Widget", "no matches for kind Widget in version example.com/v1"),
    ],
)
def test_an_unknown_scope_keeps_no_namespace_and_warns(scope, entry, warning) -> None:  # type: ignore[no-untyped-def]
    manifest = "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}\n"
    scopes = {} if scope is None else {("example.com/v1", "Widget"): scope}
    found, warnings = entries(manifest, scopes, [])
    assert found == [{"id": entry, "v": "v1"}]
    assert len(warnings) == 1
    assert warnings[0].startswith("failed to determine if Widget is namespace scoped, skipping namespace: ")
    assert warning in warnings[0]


def test_no_objects_is_an_empty_inventory() -> None:
    assert entries("", {}, []) == ([], [])


@pytest.mark.parametrize(
    ("manifest", "crds", "message"),
    [
        ("a: [\n", [], "failed to parse manifest"),
        ("", [{"name": "crds/bad.yaml", "data": "a: [\n"}], "failed to parse CRD crds/bad.yaml"),
    ],
)
def test_unreadable_yaml_fails_the_build(manifest: str, crds: list[dict[str, str]], message: str) -> None:
    with pytest.raises(InventoryBuildFailed, match=message):
        release_inventory(release_manifest_objects(manifest), "team", {}, crds)
