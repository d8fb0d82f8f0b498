"""Helm's waits read from shared watches: which requests, what a wait sees, when it may read."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer, make_mocked_request

from tide.controllers.helm.wait_watch import (
    IDLE,
    INITIAL_EVENTS_END,
    ORIGIN_NAME_LABEL,
    ORIGIN_NAMESPACE_LABEL,
    REQUIRED_FOR,
    RETRY,
    WAIT_WATCHES,
    Collection,
    Reader,
    WaitWatches,
    Writes,
    collection_of,
    is_watch_list,
    object_of,
)
from tide.shared.kube.config import Connection


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/apis/apps/v1/namespaces/a/deployments", ("/apis/apps/v1/deployments", "a")),
        ("/api/v1/namespaces/a/services", ("/api/v1/services", "a")),
        (
            "/apis/rbac.authorization.k8s.io/v1/clusterroles",
            ("/apis/rbac.authorization.k8s.io/v1/clusterroles", None),
        ),
        ("/api/v1/namespaces", ("/api/v1/namespaces", None)),
        ("/api/v1/namespaces/a", None),  # an object
        ("/apis/apps/v1/namespaces/a/deployments/x", None),
        ("/version", None),
    ],
)
def test_collection_of(path: str, expected: Any) -> None:
    assert collection_of(path) == expected


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/apis/apps/v1/namespaces/a/deployments/x", ("/apis/apps/v1/deployments", ("a", "x"))),
        ("/api/v1/namespaces/a/services/x", ("/api/v1/services", ("a", "x"))),
        (
            "/apis/rbac.authorization.k8s.io/v1/clusterroles/x",
            ("/apis/rbac.authorization.k8s.io/v1/clusterroles", ("", "x")),
        ),
        ("/apis/apps/v1/namespaces/a/deployments/x/status", None),  # a subresource
        ("/apis/apps/v1/namespaces/a/deployments", None),
    ],
)
def test_object_of(path: str, expected: Any) -> None:
    assert object_of(path) == expected


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"watch": "true", "sendInitialEvents": "true", "resourceVersionMatch": "NotOlderThan"}, True),
        ({"watch": "1", "sendInitialEvents": "true"}, True),
        # from a version the client already has: the API server answers (its versions are the watch's)
        ({"watch": "true", "resourceVersion": "12"}, False),
        ({"watch": "true", "sendInitialEvents": "true", "resourceVersion": "12"}, False),
        ({"resourceVersion": "0"}, False),  # a list
    ],
)
def test_is_watch_list(query: dict[str, str], expected: bool) -> None:
    assert is_watch_list(query) is expected


def obj(
    name: str, version: int, release: str | None = "app", namespace: str = "a", **extra: Any
) -> dict[str, Any]:
    labels = {ORIGIN_NAME_LABEL: release, ORIGIN_NAMESPACE_LABEL: "a"} if release else {}
    metadata = {"name": name, "namespace": namespace, "resourceVersion": str(version), "labels": labels}
    return {"kind": "Deployment", "apiVersion": "apps/v1", "metadata": metadata, **extra}


def events(lines: list[bytes | None]) -> list[tuple[str, str] | None]:
    out: list[tuple[str, str] | None] = []
    for line in lines:
        if line is None:
            out.append(None)
            continue
        event = json.loads(line)
        out.append((event["type"], event["object"]["metadata"].get("name", "")))
    return out


def listed(*items: dict[str, Any], version: int = 10) -> Collection:
    collection = Collection("/apis/apps/v1/deployments", idle_since=0.0)
    bare = [{k: v for k, v in item.items() if k not in ("kind", "apiVersion")} for item in items]
    collection.listed("DeploymentList", "apps/v1", version, bare)
    return collection


def open_reader(
    collection: Collection, namespace: str | None = "a"
) -> tuple[Reader, list[bytes | None], list[bytes]]:
    got: list[bytes | None] = []
    reader = Reader(("a", "app"), namespace, got.append)
    return reader, got, collection.open(reader)


def test_a_wait_starts_with_its_release_objects_then_the_bookmark_that_ends_them() -> None:
    collection = listed(
        obj("web", 3), obj("db", 4), obj("other", 5, release="other"), obj("far", 6, namespace="b")
    )
    _, _, initial = open_reader(collection)
    assert events(initial) == [("ADDED", "db"), ("ADDED", "web"), ("BOOKMARK", "")]
    added = json.loads(initial[0])["object"]
    assert (added["kind"], added["apiVersion"]) == ("Deployment", "apps/v1")  # a list's items carry none
    bookmark = json.loads(initial[-1])["object"]
    assert bookmark["metadata"] == {"resourceVersion": "10", "annotations": {INITIAL_EVENTS_END: "true"}}
    assert (bookmark["kind"], bookmark["apiVersion"]) == ("Deployment", "apps/v1")


def test_a_wait_of_all_namespaces_sees_its_release_everywhere() -> None:
    collection = listed(obj("web", 3), obj("far", 6, namespace="b"))
    _, _, initial = open_reader(collection, namespace=None)
    assert events(initial)[:2] == [("ADDED", "web"), ("ADDED", "far")]
    assert set(collection.by_origin) == {APP}


def test_events_reach_the_waits_that_see_them_as_their_own_watch_would_show_them() -> None:
    collection = listed(obj("web", 3))
    _, got, _ = open_reader(collection)
    collection.event("MODIFIED", obj("web", 11))
    collection.event("ADDED", obj("db", 12))
    collection.event("ADDED", obj("else", 13, release="other"))  # another release's: not seen
    collection.event("MODIFIED", obj("web", 14, release="other"))  # left the release: DELETED for it
    collection.event("MODIFIED", obj("else", 15))  # entered it: ADDED
    collection.event("DELETED", obj("db", 16))
    collection.event("BOOKMARK", {"metadata": {"resourceVersion": "20"}})
    assert events(got) == [
        ("MODIFIED", "web"),
        ("ADDED", "db"),
        ("DELETED", "web"),
        ("ADDED", "else"),
        ("DELETED", "db"),
    ]
    assert collection.version == 20
    assert set(collection.objects) == {("a", "web"), ("a", "else")}
    assert collection.by_origin == {APP: {("a", "else")}, ("a", "other"): {("a", "web")}}


def test_a_closed_wait_receives_nothing_and_the_watch_goes_idle() -> None:
    collection = listed(obj("web", 3))
    reader, got, _ = open_reader(collection)
    collection.close(reader, now=100.0)
    collection.event("MODIFIED", obj("web", 11))
    assert got == []
    assert not collection.is_idle(100.0 + IDLE - 1)
    assert collection.is_idle(100.0 + IDLE)


def test_a_new_list_or_a_lost_watch_ends_the_waits_streams() -> None:
    collection = listed(obj("web", 3))
    _, got, _ = open_reader(collection)
    collection.listed("DeploymentList", "apps/v1", 30, [])
    assert got == [None]
    _, got, _ = open_reader(collection)
    collection.lost()
    assert got == [None]
    assert not collection.synced and not collection.objects


APP = ("a", "app")


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def answer(version: int, release: str | None = "app") -> bytes:
    return json.dumps(obj("web", version, release=release)).encode()


def test_a_wait_reads_the_shared_watch_only_once_it_holds_the_release_writes() -> None:
    """An upgrade's wait must not see the previous generation, ready, from a watch that is behind."""
    clock = Clock()
    writes = Writes(clock)
    collection = listed(obj("web", 3))
    writes.wrote("/apis/apps/v1/namespaces/a/deployments/web", answer(12))
    assert not writes.reached(collection, APP)
    collection.event("MODIFIED", obj("web", 12))
    assert writes.reached(collection, APP)
    assert writes.pending == {}


def test_a_write_is_reached_by_any_later_event_of_the_watch() -> None:
    """The write's object may be gone again (a hook deleted): a later version seen is enough."""
    writes = Writes(Clock())
    collection = listed(obj("web", 3))
    writes.wrote("/apis/apps/v1/namespaces/a/deployments/web", answer(12))
    collection.event("ADDED", obj("db", 13))
    assert writes.reached(collection, APP)


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/apis/apps/v1/namespaces/a/deployments/web", answer(12, release=None)),  # not released by Tide
        ("/api/v1/namespaces/a/secrets", answer(12)),  # not an object path (Helm's storage POST)
        ("/apis/apps/v1/namespaces/a/deployments/web", b"\x6b\x38\x73\x00"),  # protobuf
        ("/apis/apps/v1/namespaces/a/deployments/web/status", answer(12)),
    ],
)
def test_writes_no_wait_waits_for(path: str, body: bytes) -> None:
    writes = Writes(Clock())
    writes.wrote(path, body)
    assert writes.reached(listed(), APP)


def test_other_releases_writes_do_not_hold_a_wait() -> None:
    """While many releases install, some write is always on its way: only the release's own count."""
    writes = Writes(Clock())
    collection = listed()
    writes.wrote("/apis/apps/v1/namespaces/a/deployments/web", answer(12, release="other"))
    assert writes.reached(collection, APP)
    assert not writes.reached(collection, ("a", "other"))


def test_writes_no_wait_asks_for_are_forgotten() -> None:
    clock = Clock()
    writes = Writes(clock)
    writes.wrote("/apis/apps/v1/namespaces/a/deployments/web", answer(12, release="other"))
    clock.now = REQUIRED_FOR + 1
    writes.wrote("/apis/apps/v1/namespaces/a/deployments/db", answer(13))
    assert list(writes.pending) == [("/apis/apps/v1/deployments", APP)]


def test_a_write_the_watch_never_shows_is_not_waited_for_forever() -> None:
    clock = Clock()
    writes = Writes(clock)
    collection = listed()
    writes.wrote("/apis/apps/v1/namespaces/a/deployments/web", answer(12))
    assert not writes.reached(collection, APP)
    clock.now = REQUIRED_FOR + 1
    assert writes.reached(collection, APP)


def test_writes_of_other_resources_do_not_hold_a_wait() -> None:
    writes = Writes(Clock())
    writes.wrote("/api/v1/namespaces/a/services/web", answer(12))
    assert writes.reached(listed(), APP)


class Refusing:
    """An API server that refuses the shared watch's list (the controller may not list cluster-wide)."""

    def __init__(self) -> None:
        self.lists = 0

    async def handle(self, request: web.Request) -> web.Response:
        self.lists += 1
        return web.Response(status=403, text="forbidden")


async def test_a_shared_watch_that_is_refused_leaves_the_waits_to_the_api_server() -> None:
    api = Refusing()
    app = web.Application()
    app.router.add_get("/apis/apps/v1/deployments", api.handle)
    server = TestServer(app)
    await server.start_server()
    session = aiohttp.ClientSession()
    clock = Clock()
    waits = WaitWatches(Connection(str(server.make_url(""))), lambda: session, clock)
    request = make_mocked_request("GET", "/", headers={"Accept": "application/json"})
    try:
        before = WAIT_WATCHES.labels(answered_by="api_server")._value.get()
        served = await waits.serve(request, "/apis/apps/v1/namespaces/a/deployments", APP, lasting=5)
        assert served is None
        assert WAIT_WATCHES.labels(answered_by="api_server")._value.get() == before + 1
        # Not tried again for every wait: only after RETRY seconds.
        assert await waits.serve(request, "/apis/apps/v1/namespaces/a/deployments", APP, lasting=5) is None
        assert api.lists == 1
        clock.now = RETRY + 1
        assert await waits.serve(request, "/apis/apps/v1/namespaces/a/deployments", APP, lasting=5) is None
        assert api.lists == 2
    finally:
        await waits.close()
        await session.close()
        await server.close()
