"""The informer's cache and watch bookkeeping against a scripted fake client: resume from the last
resourceVersion (bookmarks too), relist on 410 Gone with a diff of what changed, retry on errors."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from tide.shared.kube import informer as informer_module
from tide.shared.kube.discovery import ResourceInfo
from tide.shared.kube.errors import KubeApiError
from tide.shared.kube.informer import Informer


def obj(name: str, rv: str, **extra: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "ns", "resourceVersion": rv},
        **extra,
    }


class Body:
    def __init__(self, events: list[dict[str, Any]]) -> None:
        self.lines = [json.dumps(e).encode() + b"\n" for e in events]

    def __aiter__(self) -> AsyncIterator[bytes]:
        async def gen() -> AsyncIterator[bytes]:
            for line in self.lines:
                yield line

        return gen()


class Response:
    def __init__(self, events: list[dict[str, Any]]) -> None:
        self.content = Body(events)


class ScriptedClient:
    """lists: successive list results; watches: successive watch scripts (events, or an exception)."""

    def __init__(self, lists: list[tuple[list[dict[str, Any]], str]], watches: list[Any]) -> None:
        self.lists = lists
        self.watches = watches
        self.watch_versions: list[str] = []
        self.done = asyncio.Event()

    async def resource(self, api_version: str, kind: str) -> ResourceInfo:
        return ResourceInfo("v1", "ConfigMap", "configmaps", True)

    async def list_with_version(self, *args: Any) -> tuple[list[dict[str, Any]], str]:
        return self.lists.pop(0)

    @contextlib.asynccontextmanager
    async def stream(self, path: str, query: dict[str, str], read_timeout: float) -> AsyncIterator[Response]:
        self.watch_versions.append(query["resourceVersion"])
        if not self.watches:
            self.done.set()
            await asyncio.sleep(3600)
        script = self.watches.pop(0)
        if isinstance(script, Exception):
            raise script
        yield Response(script)


async def run(client: ScriptedClient) -> tuple[Informer, list[tuple[str, str, str]]]:
    informer = Informer(client, "v1", "ConfigMap")  # type: ignore[arg-type]
    seen: list[tuple[str, str, str]] = []
    informer.add_handler(
        lambda t, o, old: seen.append((t, o["metadata"]["name"], o["metadata"]["resourceVersion"]))
    )
    informer.start()
    await asyncio.wait_for(client.done.wait(), 5)
    await informer.stop()
    return informer, seen


async def test_watch_resumes_from_last_resource_version_and_bookmarks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(informer_module, "RETRY_MIN", 0.01)
    client = ScriptedClient(
        lists=[([obj("a", "1")], "10")],
        watches=[
            [{"type": "MODIFIED", "object": obj("a", "11")}, {"type": "ADDED", "object": obj("b", "12")}],
            aiohttp.ClientConnectionError("connection reset"),
            [
                {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "20"}}},
                {"type": "DELETED", "object": obj("b", "21")},
            ],
        ],
    )
    informer, seen = await run(client)
    assert client.watch_versions == ["10", "12", "12", "21"]
    assert seen == [
        ("ADDED", "a", "1"),
        ("MODIFIED", "a", "11"),
        ("ADDED", "b", "12"),
        ("DELETED", "b", "21"),
    ]
    assert [o["metadata"]["name"] for o in informer.items()] == ["a"]
    assert informer.relists == 1 and informer.reconnects == 1


async def test_gone_relists_and_reports_the_difference() -> None:
    client = ScriptedClient(
        lists=[([obj("a", "1"), obj("b", "2")], "10"), ([obj("a", "1"), obj("c", "30")], "31")],
        watches=[[{"type": "ERROR", "object": {"kind": "Status", "code": 410, "reason": "Expired"}}]],
    )
    informer, seen = await run(client)
    assert client.watch_versions == ["10", "31"]
    assert seen[2:] == [("ADDED", "c", "30"), ("DELETED", "b", "2")]
    assert sorted(o["metadata"]["name"] for o in informer.items()) == ["a", "c"]
    assert informer.relists == 2


async def test_gone_as_the_watch_requests_status_relists() -> None:
    """A watch refused with HTTP 410 is not retried from the expired resourceVersion."""
    client = ScriptedClient(
        lists=[([obj("a", "1")], "10"), ([obj("a", "1"), obj("c", "30")], "31")],
        watches=[KubeApiError(410, "Expired", "too old resource version: 10 (30)")],
    )
    informer, seen = await run(client)
    assert client.watch_versions == ["10", "31"]
    assert seen[1:] == [("ADDED", "c", "30")]
    assert informer.relists == 2


async def test_missing_crd_is_said_once_then_polled_quietly(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A controller started before its CRD: one clear line naming the CRD and how to install it, no
    stream of 404 warnings, and the cache syncs as soon as the CRD is served."""
    from tide.shared.kube.errors import ResourceNotFoundError

    monkeypatch.setattr(informer_module, "MISSING_RETRY", 0.01)
    client = ScriptedClient(lists=[([obj("a", "1")], "10")], watches=[])
    listed = client.list_with_version
    misses = 0

    async def list_until_installed(*args: Any) -> tuple[list[dict[str, Any]], str]:
        nonlocal misses
        if misses < 5:
            misses += 1
            assert informer.missing == (misses > 1)
            raise ResourceNotFoundError("source.toolkit.fluxcd.io/v1", "GitRepository")
        return await listed(*args)

    client.list_with_version = list_until_installed  # type: ignore[method-assign]
    informer = Informer(client, "source.toolkit.fluxcd.io/v1", "GitRepository")  # type: ignore[arg-type]
    with caplog.at_level("INFO", logger="tide.kube.informer"):
        await informer.wait_synced(5)
        await asyncio.wait_for(client.done.wait(), 5)
    await informer.stop()
    assert misses == 5 and not informer.missing and len(informer) == 1
    problems = [r for r in caplog.records if r.levelname in ("WARNING", "ERROR")]
    assert [r.getMessage() for r in problems] == [
        "CustomResourceDefinition gitrepositories.source.toolkit.fluxcd.io is not installed: install "
        "Tide's CRDs with `tide install --crds-only` (or the Helm chart charts/tide); waiting for it"
    ]


def test_a_users_own_missing_kind_gets_no_install_tide_advice() -> None:
    from tide.shared.kube.informer import missing_crd_message

    assert missing_crd_message("example.com/v1", "Widget") == (
        "the API server serves no Widget in example.com/v1 (its CRD is not installed); waiting for it"
    )
