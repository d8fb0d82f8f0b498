from collections.abc import Callable

from tide.controllers.kustomize.depends_on import (
    Key,
    dependency_keys,
    dependency_not_ready,
    depends_on_edges,
    find_cycle,
    format_cycle,
)


def ks(
    name: str,
    deps: list[str] = (),
    ready: bool = True,
    gen: int = 1,
    observed: int = 1,
    revision: str = "main@sha1:abc",
    source: str = "repo",
    ns: str = "flux-system",
) -> dict:
    return {
        "metadata": {"name": name, "namespace": ns, "generation": gen},
        "spec": {
            "dependsOn": [{"name": d} for d in deps],
            "sourceRef": {"kind": "GitRepository", "name": source},
        },
        "status": {
            "observedGeneration": observed,
            "lastAppliedRevision": revision,
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }


def test_keys_default_to_own_namespace() -> None:
    obj = ks("apps", ["infra"])
    obj["spec"]["dependsOn"].append({"name": "other", "namespace": "team"})
    assert dependency_keys(obj) == [("flux-system", "infra"), ("team", "other")]


def test_ready_dependency() -> None:
    assert dependency_not_ready(ks("apps"), ("flux-system", "infra"), ks("infra"), "main@sha1:abc") is None


def test_missing_not_ready_and_stale_generation() -> None:
    key = ("flux-system", "infra")
    assert "not found" in dependency_not_ready(ks("apps"), key, None, None)
    assert "is not ready" in dependency_not_ready(ks("apps"), key, ks("infra", ready=False), None)
    assert "latest generation" in dependency_not_ready(ks("apps"), key, ks("infra", gen=2, observed=1), None)


def test_same_source_must_have_applied_our_revision() -> None:
    key = ("flux-system", "infra")
    behind = ks("infra", revision="main@sha1:old")
    assert "not applied yet" in dependency_not_ready(ks("apps"), key, behind, "main@sha1:new")
    other_source = ks("infra", revision="main@sha1:old", source="other")
    assert dependency_not_ready(ks("apps"), key, other_source, "main@sha1:new") is None


def edges_of(*objects: dict) -> Callable[[Key], list[Key]]:
    found = {(o["metadata"]["namespace"], o["metadata"]["name"]): o for o in objects}
    return depends_on_edges(found.get)


def test_cycle_is_found_from_every_member() -> None:
    graph = edges_of(ks("a", ["b"]), ks("b", ["c"]), ks("c", ["a"]), ks("d", ["a"]))
    for name in "abc":
        cycle = find_cycle(("flux-system", name), graph)
        assert cycle is not None and cycle[0] == cycle[-1] == ("flux-system", name)
        assert len(cycle) == 4
    assert find_cycle(("flux-system", "d"), graph) is None
    assert format_cycle(find_cycle(("flux-system", "a"), graph)) == (
        "flux-system/a -> flux-system/b -> flux-system/c -> flux-system/a"
    )


def test_self_dependency_is_a_cycle() -> None:
    graph = edges_of(ks("a", ["a"]))
    assert find_cycle(("flux-system", "a"), graph) == [("flux-system", "a"), ("flux-system", "a")]


def test_no_cycle_in_diamond() -> None:
    graph = edges_of(ks("a", ["b", "c"]), ks("b", ["d"]), ks("c", ["d"]), ks("d"))
    assert find_cycle(("flux-system", "a"), graph) is None


async def test_no_cross_namespace_refs_refuses_a_dependency_in_another_namespace() -> None:
    from types import SimpleNamespace

    import pytest

    from tide.controllers.kustomize.options import KustomizeOptions
    from tide.controllers.kustomize.reconciler import KustomizationReconciler
    from tide.shared.runtime.result import StalledError

    obj = ks("app", ns="tenant-a")
    obj["spec"]["dependsOn"] = [{"name": "infra", "namespace": "flux-system"}]
    ctx = SimpleNamespace(raw=obj, namespace="tenant-a", name="app", kube=None)
    locked = KustomizationReconciler(KustomizeOptions(no_cross_namespace_refs=True))
    with pytest.raises(StalledError, match="dependency 'infra' in namespace 'flux-system'") as refused:
        await locked._check_dependencies(ctx, "main@sha1:abc", 30)  # type: ignore[arg-type]
    assert refused.value.reason == "AccessDenied"
