"""An informer's indexes (client-go's Indexer): lookups follow every add, change and delete."""

from __future__ import annotations

from typing import Any

from tide.shared.kube.informer import Informer


def ks(name: str, source: str, rv: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "apps", "resourceVersion": rv},
        "spec": {"sourceRef": {"kind": "GitRepository", "name": source}},
    }


def by_source(obj: dict[str, Any]) -> list[str]:
    return [obj["spec"]["sourceRef"]["name"]]


def names(items: list[dict[str, Any]]) -> list[str]:
    return [i["metadata"]["name"] for i in items]


def event(informer: Informer, kind: str, obj: dict[str, Any]) -> None:
    informer._on_event({"type": kind, "object": obj})


def test_an_index_follows_the_cache() -> None:
    informer = Informer(None, "kustomize.toolkit.fluxcd.io/v1", "Kustomization")  # type: ignore[arg-type]
    event(informer, "ADDED", ks("a", "repo", "1"))
    informer.add_index("source", by_source)  # built from what is cached already
    event(informer, "ADDED", ks("b", "repo", "2"))
    event(informer, "ADDED", ks("c", "other", "3"))
    assert names(informer.by_index("source", "repo")) == ["a", "b"]
    event(informer, "MODIFIED", ks("b", "other", "4"))  # moved to another source
    assert names(informer.by_index("source", "repo")) == ["a"]
    assert names(informer.by_index("source", "other")) == ["b", "c"]
    event(informer, "DELETED", ks("c", "other", "5"))
    assert names(informer.by_index("source", "other")) == ["b"]
    assert informer.by_index("source", "nothing") == []


def test_a_malformed_object_is_in_no_entry_and_breaks_nothing() -> None:
    informer = Informer(None, "kustomize.toolkit.fluxcd.io/v1", "Kustomization")  # type: ignore[arg-type]
    informer.add_index("source", by_source)
    event(informer, "ADDED", {"metadata": {"name": "bad", "namespace": "apps", "resourceVersion": "1"}})
    event(informer, "ADDED", ks("good", "repo", "2"))
    assert names(informer.by_index("source", "repo")) == ["good"]
    assert informer.get("apps", "bad") is not None
