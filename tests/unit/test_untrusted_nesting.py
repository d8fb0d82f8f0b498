"""Deeply nested documents: JSON on the events and receiver endpoints answers 400 (not a 500 from
RecursionError), SOPS JSON fails with a DecryptionError, and a SOPS YAML alias bomb is refused
before it is expanded."""

from __future__ import annotations

import hashlib
import hmac
import tracemalloc

import pytest
from aiohttp.test_utils import TestClient, TestServer

from tide.controllers.kustomize.sops.errors import DecryptionError, YAMLAliasRefused
from tide.controllers.kustomize.sops.formats import Format, _load_yaml, load
from tide.controllers.notification.dispatch import Dispatcher
from tide.controllers.notification.events import EventServer
from tide.controllers.notification.receivers import ReceiverServer, webhook_path
from tide.controllers.notification.routing import EventRouter
from tide.shared import boundedjson

from test_notification_servers import FakeKube, objects, receiver_objects  # isort: skip

DEEP = b"[" * 200_000 + b"]" * 200_000


def test_bounded_loads_refuses_deep_nesting_as_a_value_error() -> None:
    with pytest.raises(boundedjson.JSONTooDeep):
        boundedjson.loads(DEEP)
    with pytest.raises(boundedjson.JSONTooDeep):
        boundedjson.loads(b'{"a":' * 150 + b"1" + b"}" * 150)  # parses, but too deep to walk
    assert boundedjson.loads(b'{"a": [[1]]}') == {"a": [[1]]}
    assert issubclass(boundedjson.JSONTooDeep, ValueError)


async def test_event_endpoint_answers_400_to_deep_json() -> None:
    async def sender(*_: object) -> None:
        pass

    dispatcher = Dispatcher(sender=sender)
    server = EventServer("127.0.0.1:0", EventRouter(FakeKube(objects()), dispatcher))
    async with TestClient(TestServer(server.app())) as client:
        resp = await client.post("/", data=DEEP)
        assert resp.status == 400
        assert "nested deeper" in await resp.text()
    await dispatcher.close()


async def test_receiver_endpoint_answers_400_to_deep_json() -> None:
    objs = receiver_objects("generic")
    objs[1]["spec"]["resourceFilter"] = "req.deploy == true"
    kube = FakeKube(objs)
    async with TestClient(TestServer(ReceiverServer("127.0.0.1:0", kube).app())) as client:
        resp = await client.post(webhook_path("tok", "r", "apps"), data=DEEP)
        assert resp.status == 400
    assert kube.patches == []


async def test_signed_github_receiver_answers_400_to_deep_json() -> None:
    kube = FakeKube(receiver_objects("github"))
    signature = "sha256=" + hmac.new(b"tok", DEEP, hashlib.sha256).hexdigest()
    async with TestClient(TestServer(ReceiverServer("127.0.0.1:0", kube).app())) as client:
        resp = await client.post(
            webhook_path("tok", "r", "apps"),
            data=DEEP,
            headers={"X-Hub-Signature-256": signature, "X-GitHub-Event": "push"},
        )
        assert resp.status == 400
    assert kube.patches == []


def test_sops_json_deep_nesting_is_a_decryption_error() -> None:
    with pytest.raises(DecryptionError):
        load(b'{"a": ' + DEEP + b"}", Format.JSON)


def alias_bomb(depth: int) -> bytes:
    """Each level a list of ten aliases of the level below: 10**depth leaves from ~100 bytes
    per level (the issue measured 7.4 s at depth 6 from 2.4 KB)."""
    lines = ["l0: &l0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, depth + 1):
        lines.append(f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 10) + "]")
    lines.append("sops: {version: 3.8.1}")
    return ("\n".join(lines) + "\n").encode()


def test_sops_yaml_alias_bomb_is_refused_before_expansion() -> None:
    tracemalloc.start()
    try:
        with pytest.raises(YAMLAliasRefused, match="aliases are not supported"):
            load(alias_bomb(9), Format.YAML)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20
    assert issubclass(YAMLAliasRefused, DecryptionError)


def test_sops_yaml_anchors_without_aliases_still_load() -> None:
    branches, _ = _load_yaml(b"a: &x 1\nb: 2\n")
    assert list(branches[0]) == [("a", 1), ("b", 2)]
