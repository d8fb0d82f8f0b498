"""The Helm API proxy's discovery cache: which requests it answers, and when it forgets."""

from __future__ import annotations

import pytest

from tide.controllers.helm.discovery_cache import (
    API_KINDS,
    SETTLE,
    DiscoveryCache,
    Document,
    changes_apis,
    is_discovery_read,
)

AGGREGATED = {"Accept": "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"}
DOC = Document(b'{"kind":"APIGroupDiscoveryList"}', (("Content-Type", "application/json"),))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def watching(clock: Clock) -> DiscoveryCache:
    cache = DiscoveryCache(clock)
    for kind in API_KINDS:
        cache.watch_started(kind)
    clock.now += SETTLE
    return cache


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("GET", "/version", True),
        ("GET", "/api", True),
        ("GET", "/apis", True),
        ("GET", "/openapi/v3", True),
        # What Helm reads per kind or keeps by hash, and anything else, goes to the API server.
        ("GET", "/apis/apps/v1", False),
        ("GET", "/openapi/v3/apis/apps/v1", False),
        ("GET", "/api/v1/namespaces/a/secrets", False),
        ("POST", "/apis", False),
    ],
)
def test_which_requests_are_discovery(method, path, expected) -> None:
    assert is_discovery_read(method, path) is expected


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", True),
        ("PATCH", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/a.example.com", True),
        ("DELETE", "/apis/apiregistration.k8s.io/v1/apiservices/v1.example.com", True),
        ("GET", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", False),
        ("PATCH", "/apis/apps/v1/namespaces/a/deployments/b", False),
        ("PATCH", "/apis/apiextensions.k8s.io.evil/v1/x", False),
    ],
)
def test_which_writes_change_the_apis(method, path, expected) -> None:
    assert changes_apis(method, path) is expected


def test_a_document_is_served_while_nothing_changed() -> None:
    clock = Clock()
    cache = watching(clock)
    cache.put("local", "/apis", AGGREGATED, cache.begin(), DOC)
    assert cache.get("local", "/apis", AGGREGATED) == DOC
    # Another route (another identity or cluster), path or Accept is another document.
    assert cache.get("other", "/apis", AGGREGATED) is None
    assert cache.get("local", "/api", AGGREGATED) is None
    assert cache.get("local", "/apis", {"Accept": "application/json"}) is None


def test_a_change_forgets_everything_and_nothing_is_kept_until_it_settles() -> None:
    clock = Clock()
    cache = watching(clock)
    cache.put("local", "/apis", AGGREGATED, cache.begin(), DOC)
    cache.changed()  # a CRD event
    assert cache.get("local", "/apis", AGGREGATED) is None
    # Right after a change the API server may not publish the new API yet: not kept.
    assert cache.begin() is None
    cache.put("local", "/apis", AGGREGATED, cache.begin(), DOC)
    clock.now += SETTLE - 0.1
    assert cache.get("local", "/apis", AGGREGATED) is None
    clock.now += 0.1
    cache.put("local", "/apis", AGGREGATED, cache.begin(), DOC)
    assert cache.get("local", "/apis", AGGREGATED) == DOC


def test_a_read_overlapping_a_change_is_not_kept() -> None:
    clock = Clock()
    cache = watching(clock)
    ticket = cache.begin()
    cache.changed()
    clock.now += SETTLE
    cache.put("local", "/apis", AGGREGATED, ticket, DOC)
    assert cache.get("local", "/apis", AGGREGATED) is None


def test_nothing_is_cached_unless_both_kinds_are_watched() -> None:
    clock = Clock()
    cache = DiscoveryCache(clock)
    cache.watch_started(API_KINDS[0])
    clock.now += SETTLE
    assert cache.begin() is None
    cache.watch_started(API_KINDS[1])
    clock.now += SETTLE
    cache.put("local", "/apis", AGGREGATED, cache.begin(), DOC)
    assert cache.get("local", "/apis", AGGREGATED) == DOC
    # A watch that ended may have missed a change: forget, and stop serving until it runs again.
    cache.watch_stopped(API_KINDS[1])
    clock.now += SETTLE
    assert cache.get("local", "/apis", AGGREGATED) is None
    assert cache.begin() is None
