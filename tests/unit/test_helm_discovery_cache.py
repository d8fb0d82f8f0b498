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
    server_minor,
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


def apiservice(name: str, service: dict | None = None) -> dict:
    return {"metadata": {"name": name}, "spec": {"service": service} if service else {"group": "apps"}}


@pytest.mark.parametrize(
    ("version", "minor"),
    [
        ({"major": "1", "minor": "34"}, 34),
        ({"major": "1", "minor": "27+"}, 27),
        ({"major": "1", "minor": ""}, None),
        ({"major": "2", "minor": "0"}, None),
        ({}, None),
    ],
)
def test_server_minor(version, minor) -> None:
    assert server_minor(version) == minor


def test_the_server_validates_fields_only_when_no_api_is_served_by_another_server() -> None:
    cache = DiscoveryCache(Clock())
    cache.server_minor = 34
    assert not cache.server_validates_fields  # the APIServices are not known yet
    cache.apiservices_listed([apiservice("v1."), apiservice("v1.apps")])
    assert cache.server_validates_fields
    # An aggregated API (metrics-server's): Helm's own check decides, kind by kind.
    metrics = apiservice("v1beta1.metrics.k8s.io", {"namespace": "kube-system", "name": "metrics-server"})
    cache.apiservice_event("ADDED", metrics)
    assert not cache.server_validates_fields
    cache.apiservice_event("DELETED", metrics)
    assert cache.server_validates_fields
    cache.apiservice_event("MODIFIED", apiservice("v1.apps", {"name": "x"}))
    assert not cache.server_validates_fields
    cache.apiservices_listed([apiservice("v1.")])
    assert cache.server_validates_fields
    # A watch that ended leaves the APIServices unknown until they are listed again.
    cache.watch_stopped(API_KINDS[1])
    assert not cache.server_validates_fields


@pytest.mark.parametrize("minor", [None, 26])
def test_before_server_side_field_validation_helm_checks(minor) -> None:
    cache = DiscoveryCache(Clock())
    cache.server_minor = minor
    cache.apiservices_listed([apiservice("v1.")])
    assert not cache.server_validates_fields
