"""The applier's decisions and the API requests each one costs, against a small in-memory fake."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import pytest

from tide.controllers.kustomize.apply import Applier, ApplyError, ApplyOptions
from tide.shared.inventory import ObjectRef
from tide.shared.kube.errors import KubeApiError, KubeUnreachableError, ResourceNotFoundError
from tide.shared.kustomize.owner import set_owner_labels

M = "kustomize-controller"


@dataclass
class Info:
    namespaced: bool = True


class FakeInformer:
    synced = True

    def __init__(self, store: dict[tuple[str, str, str], dict[str, Any]], kind: str) -> None:
        self.store, self.kind = store, kind

    def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        obj = self.store.get((self.kind, namespace, name))
        return copy.deepcopy(obj) if obj else None

    def add_handler(self, handler: Any) -> None:
        self.handler = handler


class FakeKube:
    """Apply keeps what was sent plus server fields; managedFields list the sent fields as owned."""

    def __init__(self) -> None:
        self.store: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.requests: list[str] = []
        self.immutable: set[str] = set()
        self.refused: dict[str, KubeApiError] = {}  # by name: what the API server answers
        self.cut_off: set[str] = set()  # by name: writes whose connection is lost (dry-runs pass)
        self.rv = 0

    def informer(self, api_version: str, kind: str, namespace: str | None = None,
                 label_selector: str | None = None) -> FakeInformer:  # fmt: skip
        return FakeInformer(self.store, kind)

    async def resource(self, api_version: str, kind: str) -> Info:
        if kind == "Widget":
            raise ResourceNotFoundError(api_version, kind)
        return Info(namespaced=kind != "Namespace")

    async def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> Any:
        self.requests.append("get")
        return copy.deepcopy(self.store.get((kind, namespace or "", name)))

    async def delete(self, api_version: str, kind: str, name: str, namespace: str | None = None,
                     propagation: str = "Background") -> bool:  # fmt: skip
        self.requests.append("delete")
        return self.store.pop((kind, namespace or "", name), None) is not None

    async def apply(self, obj: dict[str, Any], field_manager: str, force: bool = True,
                    dry_run: bool = False) -> dict[str, Any]:  # fmt: skip
        self.requests.append("dry-run" if dry_run else "apply")
        meta = obj["metadata"]
        if meta["name"] in self.refused:
            raise self.refused[meta["name"]]
        if meta["name"] in self.cut_off and not dry_run:
            raise KubeUnreachableError(ConnectionResetError("Connection reset by peer"))
        key = (obj["kind"], meta.get("namespace") or "", meta["name"])
        live = self.store.get(key)
        if live is not None and obj["kind"] in self.immutable and live.get("data") != obj.get("data"):
            raise KubeApiError(422, "Invalid", "data: Forbidden: field is immutable when `immutable` is set")
        result = copy.deepcopy(obj)
        self.rv += 1
        result["metadata"].update(resourceVersion=str(self.rv), uid="u-" + meta["name"], managedFields=[
            {"manager": field_manager, "operation": "Apply", "fieldsV1": fields_of(obj)}])  # fmt: skip
        if not dry_run:
            self.store[key] = result
        return copy.deepcopy(result)

    def edit(self, kind: str, namespace: str, name: str, path: list[str], value: Any) -> None:
        """A manual change by another manager, which takes over the changed field."""
        obj = self.store[(kind, namespace, name)]
        target = obj
        for p in path[:-1]:
            target = target[p]
        target[path[-1]] = value
        fields = obj["metadata"]["managedFields"][0]["fieldsV1"]
        for p in path[:-1]:
            fields = fields[f"f:{p}"]
        fields.pop(f"f:{path[-1]}", None)
        obj["metadata"]["managedFields"].append(
            {"manager": "kubectl-edit", "operation": "Update", "fieldsV1": {}}
        )


def fields_of(value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        return {f"f:{k}": fields_of(v) for k, v in value.items() if k not in ("apiVersion", "kind")}
    return {}


def cm(name: str, **data: str) -> dict[str, Any]:
    obj = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "apps"},
        "data": data,
    }
    set_owner_labels(obj, "ks", "flux-system")
    return obj


async def apply_all(applier: Applier, objs: list[dict[str, Any]], **options: Any) -> dict[str, str]:
    changes = await applier.apply_all(copy.deepcopy(objs), ApplyOptions(**options))
    return {c.ref.name: c.action for c in changes.entries}


async def test_noop_reconcile_makes_no_request() -> None:
    kube = FakeKube()
    applier = Applier(kube)
    objs = [cm(f"c{i}", v=str(i)) for i in range(20)]
    first = await apply_all(applier, objs)
    assert set(first.values()) == {"created"}
    kube.requests.clear()
    again = await apply_all(applier, objs)
    assert set(again.values()) == {"unchanged"}
    assert kube.requests == []


async def test_restarted_controller_proves_equality_without_requests() -> None:
    kube = FakeKube()
    await apply_all(Applier(kube), [cm("a", v="1")])
    kube.requests.clear()
    assert await apply_all(Applier(kube), [cm("a", v="1")]) == {"a": "unchanged"}  # no fingerprints
    assert kube.requests == []


async def test_manual_edit_is_corrected_with_one_dry_run_and_one_apply() -> None:
    kube = FakeKube()
    applier = Applier(kube)
    await apply_all(applier, [cm("a", v="1")])
    kube.edit("ConfigMap", "apps", "a", ["data", "v"], "hacked")
    kube.requests.clear()
    assert await apply_all(applier, [cm("a", v="1")]) == {"a": "configured"}
    assert kube.requests == ["dry-run", "apply"]
    assert kube.store[("ConfigMap", "apps", "a")]["data"] == {"v": "1"}


async def test_changed_git_content_is_applied() -> None:
    kube = FakeKube()
    applier = Applier(kube)
    await apply_all(applier, [cm("a", v="1")])
    kube.requests.clear()
    assert await apply_all(applier, [cm("a", v="2")]) == {"a": "configured"}
    assert kube.requests == ["dry-run", "apply"]


async def test_ssa_if_not_present_and_ignore() -> None:
    kube = FakeKube()
    applier = Applier(kube)
    once = cm("once", v="1")
    once["metadata"]["annotations"] = {"kustomize.toolkit.fluxcd.io/ssa": "IfNotPresent"}
    ignored = cm("ignored", v="1")
    ignored["metadata"]["annotations"] = {"kustomize.toolkit.fluxcd.io/ssa": "Ignore"}
    assert await apply_all(applier, [once, ignored]) == {"once": "created", "ignored": "skipped"}
    kube.edit("ConfigMap", "apps", "once", ["data", "v"], "mine")
    changed = copy.deepcopy(once)
    changed["data"]["v"] = "2"
    assert await apply_all(applier, [changed, ignored]) == {"once": "skipped", "ignored": "skipped"}
    assert kube.store[("ConfigMap", "apps", "once")]["data"] == {"v": "mine"}
    assert ("ConfigMap", "apps", "ignored") not in kube.store


async def test_immutable_change_fails_without_force_and_recreates_with_it() -> None:
    kube = FakeKube()
    kube.immutable.add("ConfigMap")
    applier = Applier(kube)
    await apply_all(applier, [cm("frozen", v="1")])
    with pytest.raises(ApplyError, match="immutable"):
        await apply_all(applier, [cm("frozen", v="2")])
    kube.requests.clear()
    assert await apply_all(applier, [cm("frozen", v="2")], force=True) == {"frozen": "configured"}
    assert "delete" in kube.requests
    assert kube.store[("ConfigMap", "apps", "frozen")]["data"] == {"v": "2"}


async def test_namespace_defaults_for_namespaced_objects() -> None:
    kube = FakeKube()
    obj = cm("a", v="1")
    del obj["metadata"]["namespace"]
    ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "apps", "namespace": "wrong"}}
    assert await apply_all(Applier(kube), [obj, ns]) == {"apps": "created", "a": "created"}
    assert ("ConfigMap", "default", "a") in kube.store
    assert ("Namespace", "", "apps") in kube.store


async def test_creating_an_object_is_validated_by_a_dry_run_first() -> None:
    kube = FakeKube()
    assert await apply_all(Applier(kube), [cm("new", v="1")]) == {"new": "created"}
    assert kube.requests == ["dry-run", "apply"]


async def test_one_refused_object_fails_its_stage_with_nothing_of_it_written() -> None:
    kube = FakeKube()
    applier = Applier(kube)
    await apply_all(applier, [cm("a", v="1")])
    kube.refused["bad"] = KubeApiError(422, "Invalid", 'ConfigMap "bad" is invalid: data: Invalid value')
    ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "apps"}}
    with pytest.raises(ApplyError) as failed:
        await apply_all(applier, [ns, cm("a", v="2"), cm("b", v="1"), cm("bad", v="1")])
    assert str(failed.value) == (
        'ConfigMap/apps/bad dry-run failed (Invalid): ConfigMap "bad" is invalid: data: Invalid value'
    )
    assert kube.store[("ConfigMap", "apps", "a")]["data"] == {"v": "1"}
    assert ("ConfigMap", "apps", "b") not in kube.store
    # The earlier stage was written and is reported, so the inventory can track it.
    assert [c.line() for c in failed.value.changes.entries] == ["Namespace/apps created"]
    del kube.refused["bad"]
    assert await apply_all(applier, [ns, cm("a", v="2"), cm("b", v="1"), cm("bad", v="1")]) == {
        "apps": "unchanged", "a": "configured", "b": "created", "bad": "created"}  # fmt: skip


async def test_a_lost_api_server_fails_the_stage_once_and_reports_what_was_written() -> None:
    """The API server goes away mid-stage: every write still ends (none is left running behind the
    failed apply), what was written is reported for the inventory, and the failure says once that
    the server was lost and carries it, so the caller retries it as unreachable, not refused."""
    kube = FakeKube()
    kube.cut_off = {"b", "c"}
    with pytest.raises(ApplyError) as failed:
        await apply_all(Applier(kube), [cm("a", v="1"), cm("b", v="1"), cm("c", v="1"), cm("d", v="1")])
    assert (
        str(failed.value)
        == "apply interrupted: the API server could not be reached: Connection reset by peer"
    )
    assert isinstance(failed.value.unreachable, KubeUnreachableError)
    assert sorted(c.line() for c in failed.value.changes.entries) == [
        "ConfigMap/apps/a created", "ConfigMap/apps/d created"]  # fmt: skip


async def test_an_unknown_kind_names_the_object_and_what_is_missing() -> None:
    kube = FakeKube()
    widget = {"apiVersion": "example.com/v1", "kind": "Widget",
              "metadata": {"name": "w", "namespace": "apps"}}  # fmt: skip
    with pytest.raises(ApplyError) as failed:
        await apply_all(Applier(kube), [widget, cm("a", v="1")])
    assert str(failed.value).startswith(
        'Widget/apps/w dry-run failed: no matches for kind "Widget" in version "example.com/v1"'
    )
    assert kube.store == {}


async def test_unchanged_objects_need_no_dry_run_beside_a_changed_one() -> None:
    kube = FakeKube()
    applier = Applier(kube)
    await apply_all(applier, [cm(f"c{i}", v="1") for i in range(5)])
    kube.requests.clear()
    changed = [cm(f"c{i}", v="2" if i == 0 else "1") for i in range(5)]
    assert (await apply_all(applier, changed))["c0"] == "configured"
    assert kube.requests == ["dry-run", "apply"]


async def test_objects_outside_our_cache_are_read_from_the_api() -> None:
    """e.g. a health check on a Deployment another tool created: not in the owner-label cache."""

    class LabelSelectedInformer(FakeInformer):
        def get(self, namespace: str, name: str) -> dict[str, Any] | None:
            obj = super().get(namespace, name)
            labels = (obj or {}).get("metadata", {}).get("labels") or {}
            return obj if "kustomize.toolkit.fluxcd.io/name" in labels else None

    kube = FakeKube()
    kube.informer = lambda *a, **k: LabelSelectedInformer(kube.store, a[1])  # type: ignore[method-assign]
    foreign = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "f", "namespace": "apps"}}
    kube.store[("ConfigMap", "apps", "f")] = foreign
    applier = Applier(kube)
    assert await applier.live(foreign) == foreign
    assert kube.requests == ["get"]
    assert await applier.live(foreign, owned_only=True) is None


class ScopedInformer(FakeInformer):
    """A cache one identity may or may not list (its namespace in `allowed`)."""

    def __init__(self, kube: FakeKube, kind: str, namespace: str | None, allowed: set[str | None]) -> None:
        super().__init__(kube.store, kind)
        self.kube, self.namespace, self.allowed = kube, namespace, allowed
        self.synced = False
        self.stopped = 0

    async def wait_listed(self, seconds: float | None = None) -> bool:
        self.kube.requests.append(f"list {self.namespace or '*'}")
        self.synced = self.namespace in self.allowed
        return self.synced

    def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        assert namespace == (self.namespace or namespace)
        return super().get(namespace, name)

    async def stop(self) -> None:
        self.stopped += 1


def tenant_kube(allowed: set[str | None]) -> tuple[FakeKube, dict[tuple[str, str | None], ScopedInformer]]:
    kube = FakeKube()
    caches: dict[tuple[str, str | None], ScopedInformer] = {}

    def informer(api_version: str, kind: str, namespace: str | None = None, label_selector: str | None = None
                 ) -> ScopedInformer:  # fmt: skip
        return caches.setdefault((kind, namespace), ScopedInformer(kube, kind, namespace, allowed))

    kube.informer = informer  # type: ignore[method-assign]
    return kube, caches


async def test_a_tenant_has_a_cache_per_namespace_and_a_noop_is_free() -> None:
    kube, caches = tenant_kube(allowed={"apps"})
    applier = Applier(kube, namespaced_caches=True)
    assert (await apply_all(applier, [cm("a")]))["a"] == "created"
    assert kube.requests == ["list apps", "dry-run", "apply"]
    kube.requests.clear()
    assert (await apply_all(applier, [cm("a")]))["a"] == "unchanged"
    assert kube.requests == []
    assert list(caches) == [("ConfigMap", "apps")]


async def test_where_a_tenant_may_not_list_objects_are_read_one_by_one() -> None:
    """A refused list is not waited out: the object is read (and the refusal is the API's answer),
    and the list is not asked again until FORBIDDEN_RETRY has passed."""
    kube, caches = tenant_kube(allowed=set())
    applier = Applier(kube, namespaced_caches=True)
    kube.refused["a"] = KubeApiError(
        403, "Forbidden", 'configmaps "a" is forbidden: User "tenant" cannot patch'
    )
    with pytest.raises(ApplyError, match=r"ConfigMap/apps/a dry-run failed \(Forbidden\)"):
        await apply_all(applier, [cm("a")])
    assert kube.requests == ["list apps", "get", "dry-run"]
    assert caches[("ConfigMap", "apps")].stopped == 1
    kube.requests.clear()
    with pytest.raises(ApplyError):
        await apply_all(applier, [cm("a")])
    assert kube.requests == ["get", "dry-run"]
    applier._cache_broken = {k: v - Applier.FORBIDDEN_RETRY for k, v in applier._cache_broken.items()}
    kube.requests.clear()
    with pytest.raises(ApplyError):
        await apply_all(applier, [cm("a")])
    assert kube.requests == ["list apps", "get", "dry-run"]


async def test_a_health_wait_is_woken_by_a_change_of_its_objects_only() -> None:
    kube = FakeKube()
    applier = Applier(kube, M)
    informer = await applier.cache_for("v1", "ConfigMap", "n")
    assert informer is not None
    web = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "web", "namespace": "n"}}
    other = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "other", "namespace": "n"}}
    with applier.changes_of([ObjectRef.of(web)]) as changed:
        informer.handler("MODIFIED", other, None)
        assert not changed.is_set()
        informer.handler("MODIFIED", web, None)
        assert changed.is_set()
    assert not applier._waiters  # nothing left behind once the wait ends
