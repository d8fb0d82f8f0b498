"""The event and receiver HTTP handlers end to end in-process, with a small in-memory cluster."""

from __future__ import annotations

import asyncio
import base64
import copy
import hashlib
import hmac
import json
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from tide.controllers.notification.dispatch import Dispatcher
from tide.controllers.notification.events import EventServer
from tide.controllers.notification.providers import OutgoingRequest, ProviderConfig
from tide.controllers.notification.receivers import REQUESTED_AT, ReceiverServer, webhook_path
from tide.controllers.notification.routing import EventRouter


class FakeKube:
    """Objects by (kind, namespace, name); merge patches recorded."""

    def __init__(self, objects: list[dict[str, Any]]):
        self.objects = {
            (o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]): o for o in objects
        }
        self.patches: list[tuple[str, str, str, dict[str, Any]]] = []

    async def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> Any:
        obj = self.objects.get((kind, namespace, name))
        return copy.deepcopy(obj) if obj else None

    async def list(
        self, api_version: str, kind: str, namespace: str | None = None, label_selector: str | None = None
    ) -> list[dict[str, Any]]:
        wanted = dict(p.split("=", 1) for p in label_selector.split(",")) if label_selector else {}
        return [
            copy.deepcopy(o)
            for (k, ns, _), o in self.objects.items()
            if k == kind
            and (namespace is None or ns == namespace)
            and all((o["metadata"].get("labels") or {}).get(a) == b for a, b in wanted.items())
        ]

    async def patch_merge(
        self, api_version: str, kind: str, name: str, namespace: str | None, patch: dict[str, Any]
    ) -> dict[str, Any]:
        obj = self.objects.get((kind, namespace, name))
        if obj is None:
            raise LookupError(f"{kind} {namespace}/{name} not found")
        obj["metadata"].setdefault("annotations", {}).update(patch["metadata"]["annotations"])
        self.patches.append((kind, namespace or "", name, patch))
        return obj


def b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


def flux_event(name: str = "app", message: str = "Applied revision: main@sha1:abc") -> dict[str, Any]:
    return {
        "involvedObject": {
            "kind": "Kustomization",
            "namespace": "apps",
            "name": name,
            "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
        },
        "severity": "info",
        "timestamp": "2026-11-26T04:00:00Z",
        "message": message,
        "reason": "ReconciliationSucceeded",
        "reportingController": "kustomize-controller",
        "metadata": {"kustomize.toolkit.fluxcd.io/revision": "main@sha1:abc"},
    }


def objects() -> list[dict[str, Any]]:
    return [
        {
            "kind": "Kustomization",
            "metadata": {
                "name": "app",
                "namespace": "apps",
                "labels": {"team": "a"},
                "annotations": {"event.toolkit.fluxcd.io/cluster": "eu"},
            },
        },
        {
            "kind": "Provider",
            "metadata": {"name": "hook", "namespace": "apps", "uid": "u"},
            "spec": {
                "type": "generic-hmac",
                "address": "http://example.invalid/",
                "secretRef": {"name": "hook"},
            },
        },
        {"kind": "Secret", "metadata": {"name": "hook", "namespace": "apps"}, "data": {"token": b64("k")}},
        {
            "kind": "Alert",
            "metadata": {"name": "all", "namespace": "apps"},
            "spec": {
                "providerRef": {"name": "hook"},
                "eventSources": [{"kind": "Kustomization", "name": "*"}],
                "exclusionList": ["^Skip"],
            },
        },
    ]


async def test_event_server_status_codes_and_routing():
    sent: list[tuple[ProviderConfig, OutgoingRequest]] = []

    async def sender(cfg: ProviderConfig, req: OutgoingRequest) -> None:
        sent.append((cfg, req))

    kube = FakeKube(objects())
    dispatcher = Dispatcher(sender=sender)
    server = EventServer("127.0.0.1:0", EventRouter(kube, dispatcher), rate_limit_interval=300)
    async with TestClient(TestServer(server.app())) as client:
        assert (await client.post("/", data=b"{oops")).status == 400
        assert (await client.post("/", data=b"x" * (2 << 20))).status == 413
        assert (await client.post("/", json={"involvedObject": {}})).status == 400
        assert (await client.post("/", json=flux_event())).status == 202
        assert (await client.post("/", json=flux_event())).status == 429
        assert (await client.post("/", json=flux_event(message="Skip this"))).status == 202
        await asyncio.sleep(0.05)
        await dispatcher.drain(5)
    await dispatcher.close()
    assert len(sent) == 1
    _cfg, req = sent[0]
    body = json.loads(req.body)
    assert body["metadata"] == {"revision": "main@sha1:abc", "cluster": "eu"}
    assert req.headers["X-Signature"] == "sha256=" + hmac.new(b"k", req.body, hashlib.sha256).hexdigest()


def receiver_objects(kind: str = "github") -> list[dict[str, Any]]:
    path = webhook_path("tok", "r", "apps")
    return [
        {
            "kind": "Secret",
            "metadata": {"name": "r-token", "namespace": "apps"},
            "data": {"token": b64("tok")},
        },
        {
            "kind": "Receiver",
            "metadata": {"name": "r", "namespace": "apps"},
            "spec": {
                "type": kind,
                "events": ["push"],
                "secretRef": {"name": "r-token"},
                "resources": [
                    {"kind": "GitRepository", "name": "repo"},
                    {"kind": "Kustomization", "name": "*", "matchLabels": {"team": "a"}},
                ],
            },
            "status": {"webhookPath": path, "conditions": [{"type": "Ready", "status": "True"}]},
        },
        {"kind": "GitRepository", "metadata": {"name": "repo", "namespace": "apps"}},
        {"kind": "Kustomization", "metadata": {"name": "k1", "namespace": "apps", "labels": {"team": "a"}}},
        {"kind": "Kustomization", "metadata": {"name": "k2", "namespace": "apps", "labels": {"team": "b"}}},
    ]


async def test_receiver_server_github_push():
    kube = FakeKube(receiver_objects())
    server = ReceiverServer("127.0.0.1:0", kube)
    path = webhook_path("tok", "r", "apps")
    body = json.dumps({"ref": "refs/heads/main"}).encode()
    good = "sha256=" + hmac.new(b"tok", body, hashlib.sha256).hexdigest()
    async with TestClient(TestServer(server.app())) as client:
        bad = await client.post(
            path, data=body, headers={"X-Hub-Signature-256": "sha256=00", "X-GitHub-Event": "push"}
        )
        assert bad.status == 401
        assert kube.patches == []
        assert (await client.post("/hook/" + "0" * 64, data=body)).status == 404
        big = await client.post(path, data=b"x" * ((3 << 20) + 1), headers={"X-GitHub-Event": "push"})
        assert big.status == 413
        ping_body = b'{"zen": "z"}'
        ping = await client.post(
            path,
            data=ping_body,
            headers={
                "X-Hub-Signature-256": "sha256=" + hmac.new(b"tok", ping_body, hashlib.sha256).hexdigest(),
                "X-GitHub-Event": "ping",
            },
        )
        assert ping.status == 200 and "pong" in await ping.text()
        assert kube.patches == []
        ok = await client.post(
            path, data=body, headers={"X-Hub-Signature-256": good, "X-GitHub-Event": "push"}
        )
        assert ok.status == 200
    patched = sorted((k, n) for k, _, n, _ in kube.patches)
    assert patched == [("GitRepository", "repo"), ("Kustomization", "k1")]
    assert REQUESTED_AT in kube.objects[("GitRepository", "apps", "repo")]["metadata"]["annotations"]


async def test_receiver_suspended_or_not_ready_is_not_found():
    objs = receiver_objects("generic")
    objs[1]["spec"]["suspend"] = True
    kube = FakeKube(objs)
    async with TestClient(TestServer(ReceiverServer("127.0.0.1:0", kube).app())) as client:
        assert (await client.post(webhook_path("tok", "r", "apps"), data=b"{}")).status == 404


async def test_receiver_missing_resource_is_400_but_others_annotated():
    objs = receiver_objects("generic")
    objs[1]["spec"]["resources"].append({"kind": "GitRepository", "name": "gone"})
    kube = FakeKube(objs)
    async with TestClient(TestServer(ReceiverServer("127.0.0.1:0", kube).app())) as client:
        resp = await client.post(webhook_path("tok", "r", "apps"), data=b"{}")
        assert resp.status == 400
    assert {n for _, _, n, _ in kube.patches} == {"repo", "k1"}


async def test_receiver_cross_namespace_resources_are_refused_when_locked_down():
    """--no-cross-namespace-refs: a Receiver cannot make another namespace's objects reconcile;
    it says so (400) and still annotates its own namespace's."""
    objs = receiver_objects("generic")
    objs[1]["spec"]["resources"].append({"kind": "GitRepository", "name": "theirs", "namespace": "other"})
    objs.append({"kind": "GitRepository", "metadata": {"name": "theirs", "namespace": "other"}})
    for locked, status, annotated in ((False, 200, {"repo", "k1", "theirs"}), (True, 400, {"repo", "k1"})):
        kube = FakeKube(copy.deepcopy(objs))
        server = ReceiverServer("127.0.0.1:0", kube, no_cross_namespace_refs=locked)
        async with TestClient(TestServer(server.app())) as client:
            resp = await client.post(webhook_path("tok", "r", "apps"), data=b"{}")
            assert resp.status == status
            if locked:
                text = await resp.text()
                assert "GitRepository 'other/theirs'" in text and "--no-cross-namespace-refs" in text
        assert {n for _, _, n, _ in kube.patches} == annotated


async def test_receiver_resource_filter():
    objs = receiver_objects("generic")
    objs[1]["spec"]["resourceFilter"] = "res.kind == 'Kustomization' && req.deploy == true"
    kube = FakeKube(objs)
    for o in kube.objects.values():
        o.setdefault("kind", "")
    async with TestClient(TestServer(ReceiverServer("127.0.0.1:0", kube).app())) as client:
        assert (await client.post(webhook_path("tok", "r", "apps"), data=b'{"deploy": false}')).status == 200
        assert kube.patches == []
        assert (await client.post(webhook_path("tok", "r", "apps"), data=b'{"deploy": true}')).status == 200
    assert [(k, n) for k, _, n, _ in kube.patches] == [("Kustomization", "k1")]


async def test_receiver_gcr_checks_google_token():
    objs = receiver_objects("gcr")
    objs[0]["data"].update(
        audience=b64("https://hooks.example/gcr"), email=b64("sa@p.iam.gserviceaccount.com")
    )
    kube = FakeKube(objs)
    seen: list[str] = []

    async def verifier(token: str) -> dict[str, Any]:
        seen.append(token)
        if token != "good":
            raise ValueError("invalid token")
        return {
            "iss": "https://accounts.google.com",
            "aud": "https://hooks.example/gcr",
            "email": "sa@p.iam.gserviceaccount.com",
            "email_verified": "true",
        }

    body = json.dumps(
        {"message": {"data": base64.b64encode(b'{"action": "INSERT", "tag": "x:v1"}').decode()}}
    )
    server = ReceiverServer("127.0.0.1:0", kube, gcr_verifier=verifier)
    path = webhook_path("tok", "r", "apps")
    async with TestClient(TestServer(server.app())) as client:
        assert (await client.post(path, data=body)).status == 401
        assert (await client.post(path, data=body, headers={"Authorization": "Bearer bad"})).status == 401
        assert kube.patches == []
        assert (await client.post(path, data=body, headers={"Authorization": "Bearer good"})).status == 200
    assert seen == ["bad", "good"]
    assert len(kube.patches) == 2


async def test_receiver_gcr_without_audience_and_email_refuses_google_tokens():
    """A Receiver Secret with only a token would accept a token Google signed for anyone."""
    kube = FakeKube(receiver_objects("gcr"))
    seen: list[str] = []

    async def verifier(token: str) -> dict[str, Any]:
        seen.append(token)
        return {"iss": "https://accounts.google.com", "aud": "any", "email": "a@b", "email_verified": "true"}

    body = json.dumps({"message": {"data": base64.b64encode(b'{"tag": "x:v1"}').decode()}})
    server = ReceiverServer("127.0.0.1:0", kube, gcr_verifier=verifier)
    async with TestClient(TestServer(server.app())) as client:
        resp = await client.post(
            webhook_path("tok", "r", "apps"), data=body, headers={"Authorization": "Bearer t"}
        )
        assert resp.status == 401
    assert kube.patches == [] and seen == []


async def test_router_reports_metadata_conflicts_on_the_alert():
    objs = objects()
    objs[3]["spec"]["eventMetadata"] = {"cluster": "us"}  # the object annotation says "eu"
    recorded: list[tuple[str, str, str, str]] = []

    class Recorder:
        def record(self, obj: dict[str, Any], type_: str, reason: str, message: str) -> None:
            recorded.append((obj["metadata"]["name"], type_, reason, message))

    sent: list[OutgoingRequest] = []

    async def sender(cfg: ProviderConfig, req: OutgoingRequest) -> None:
        sent.append(req)

    from tide.controllers.notification.events import clean_metadata, parse_event

    dispatcher = Dispatcher(sender=sender)
    router = EventRouter(FakeKube(objs), dispatcher, recorder=Recorder())
    assert await router.route(clean_metadata(parse_event(json.dumps(flux_event()).encode()))) == 1
    await dispatcher.drain(5)
    await dispatcher.close()
    assert recorded and recorded[0][:3] == ("all", "Warning", "MetadataAppendFailed")
    assert "cluster" in recorded[0][3]
    assert json.loads(sent[0].body)["metadata"]["cluster"] == "us"
