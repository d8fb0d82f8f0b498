from tide.shared.inventory import Entry, Inventory, ObjectRef


def obj(api_version: str, kind: str, name: str, namespace: str | None = None) -> dict:
    meta = {"name": name}
    if namespace:
        meta["namespace"] = namespace
    return {"apiVersion": api_version, "kind": kind, "metadata": meta}


def test_entry_format_matches_flux() -> None:
    inv = Inventory.from_objects(
        [
            obj("v1", "Service", "podinfo", "default"),
            obj("apps/v1", "Deployment", "podinfo", "default"),
            obj("v1", "Namespace", "apps"),
            obj("rbac.authorization.k8s.io/v1", "ClusterRole", "system:podinfo"),
        ]
    )
    assert inv.to_status() == {
        "entries": [
            {"id": "default_podinfo__Service", "v": "v1"},
            {"id": "default_podinfo_apps_Deployment", "v": "v1"},
            {"id": "_apps__Namespace", "v": "v1"},
            {"id": "_system__podinfo_rbac.authorization.k8s.io_ClusterRole", "v": "v1"},
        ]
    }


def test_ids_round_trip() -> None:
    for ref in [
        ObjectRef("", "Service", "default", "podinfo"),
        ObjectRef("", "Namespace", "", "apps"),
        ObjectRef("rbac.authorization.k8s.io", "ClusterRole", "", "system:auth:delegator"),
        ObjectRef("apiextensions.k8s.io", "CustomResourceDefinition", "", "widgets.example.com"),
    ]:
        assert ObjectRef.parse(ref.id) == ref


def test_status_round_trip() -> None:
    status = {
        "entries": [
            {"id": "default_podinfo_apps_Deployment", "v": "v1"},
            {"id": "_apps__Namespace", "v": "v1"},
        ]
    }
    assert Inventory.from_status(status).to_status() == status
    assert len(Inventory.from_status(None)) == 0


def test_stale_is_old_minus_new_in_reverse_order() -> None:
    old = Inventory.from_objects(
        [
            obj("v1", "Namespace", "apps"),
            obj("v1", "ConfigMap", "a", "apps"),
            obj("v1", "ConfigMap", "b", "apps"),
        ]
    )
    new = Inventory.from_objects([obj("v1", "Namespace", "apps"), obj("v1", "ConfigMap", "b", "apps")])
    assert [e.ref.name for e in old.stale(new)] == ["a"]
    assert old.stale(old) == []
    assert [e.ref.name for e in old.stale(Inventory())] == ["b", "a", "apps"]


def test_version_change_is_not_stale() -> None:
    old = Inventory([Entry(ObjectRef("autoscaling", "HorizontalPodAutoscaler", "ns", "h"), "v2beta2")])
    new = Inventory([Entry(ObjectRef("autoscaling", "HorizontalPodAutoscaler", "ns", "h"), "v2")])
    assert old.stale(new) == []


def test_display_names_follow_flux_change_set() -> None:
    assert ObjectRef("apps", "Deployment", "default", "podinfo").display() == "Deployment/default/podinfo"
    assert ObjectRef("", "Namespace", "", "apps").display() == "Namespace/apps"
