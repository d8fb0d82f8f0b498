"""A signed GitHub push to a Receiver makes its GitRepository and Kustomization reconcile; a bad
signature is 401 and changes nothing. Real controller process, real API server."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

pytestmark = pytest.mark.e2e

REQUESTED_AT = "reconcile.fluxcd.io/requestedAt"
TOKEN = "receiver-token-e2e"
CONFIGMAP = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: hooked\ndata:\n  v: '1'\n"


def _installed(name: str) -> bool:
    return shutil.which(name, path=str(Path(sys.executable).parent)) is not None


def get(kubectl: Any, kind: str, name: str, namespace: str) -> dict[str, Any]:
    return dict(json.loads(kubectl("get", kind, name, "-n", namespace, "-o", "json").stdout))


async def wait_until(check: Any, timeout: float = 30, what: str = "") -> Any:  # noqa: ASYNC109
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.2)


def receiver_objects(namespace: str, repo_url: str) -> list[dict[str, Any]]:
    return [
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "webhook-token", "namespace": namespace},
            "stringData": {"token": TOKEN},
        },
        {
            "apiVersion": "notification.toolkit.fluxcd.io/v1",
            "kind": "Receiver",
            "metadata": {"name": "github", "namespace": namespace},
            "spec": {
                "type": "github",
                "events": ["ping", "push"],
                "secretRef": {"name": "webhook-token"},
                "resources": [
                    {"kind": "GitRepository", "name": "repo"},
                    {"kind": "Kustomization", "name": "*", "matchLabels": {"webhook": "yes"}},
                ],
            },
        },
        {
            "apiVersion": "source.toolkit.fluxcd.io/v1",
            "kind": "GitRepository",
            "metadata": {"name": "repo", "namespace": namespace},
            "spec": {"url": repo_url, "interval": "1h", "ref": {"branch": "main"}},
        },
        {
            "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
            "kind": "Kustomization",
            "metadata": {"name": "apps", "namespace": namespace, "labels": {"webhook": "yes"}},
            "spec": {
                "interval": "1h",
                "prune": True,
                "path": "./app",
                "targetNamespace": namespace,
                "sourceRef": {"kind": "GitRepository", "name": "repo"},
            },
        },
        {
            "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
            "kind": "Kustomization",
            "metadata": {"name": "untouched", "namespace": namespace},
            "spec": {
                "interval": "1h",
                "prune": True,
                "path": "./app",
                "suspend": True,
                "sourceRef": {"kind": "GitRepository", "name": "repo"},
            },
        },
    ]


def signed(body: bytes, key: str = TOKEN) -> str:
    return "sha256=" + hmac.new(key.encode(), body, hashlib.sha256).hexdigest()


async def post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.post(url, data=body, headers=headers) as resp:
        return resp.status, await resp.text()


async def test_github_push_triggers_reconcile(
    kubectl: Any,
    namespace: str,
    notification_controller: Any,
    start_controller: Any,
    source_controller: Any,
    git_server: Any,
) -> None:
    endpoints = notification_controller()
    repo = git_server.create_repo(f"hook-{namespace}", {"app/cm.yaml": CONFIGMAP})
    kubectl(
        "apply",
        "-f",
        "-",
        input=json.dumps(
            {"apiVersion": "v1", "kind": "List", "items": receiver_objects(namespace, repo.public_http_url)}
        ),
    )

    expected_path = "/hook/" + hashlib.sha256(f"{TOKEN}github{namespace}".encode()).hexdigest()

    def ready() -> bool:
        status = get(kubectl, "receiver", "github", namespace).get("status") or {}
        conds = {c["type"]: c for c in status.get("conditions") or []}
        ready_cond = conds.get("Ready") or {}
        return (
            status.get("webhookPath") == expected_path
            and ready_cond.get("status") == "True"
            and ready_cond.get("reason") == "Succeeded"
            and ready_cond.get("message") == f"Receiver initialized for path: {expected_path}"
        )

    await wait_until(ready, 30, "Receiver Ready with webhookPath")
    url = endpoints.receiver_url + expected_path
    await asyncio.sleep(1)  # the receiver server's watch cache sees Ready

    both = bool(_installed("tide-source-controller") and _installed("tide-kustomize-controller"))
    if both:
        source = source_controller()
        start_controller(
            "kustomize",
            "--watch-all-namespaces=false",
            f"--runtime-namespace={namespace}",
            f"--source-storage-addr={source.address}",
        )

    payload = json.dumps(
        {"ref": "refs/heads/main", "after": repo.head(), "repository": {"full_name": "org/repo"}}
    ).encode()
    headers = {"X-GitHub-Event": "push", "Content-Type": "application/json"}

    status, _ = await post(url, payload, {**headers, "X-Hub-Signature-256": signed(payload, "wrong")})
    assert status == 401
    status, _ = await post(url, payload, headers)
    assert status == 401
    annotations = get(kubectl, "gitrepository", "repo", namespace)["metadata"].get("annotations") or {}
    assert REQUESTED_AT not in annotations

    ping = b'{"zen": "Design for failure.", "hook_id": 7}'
    status, text = await post(url, ping, {"X-GitHub-Event": "ping", "X-Hub-Signature-256": signed(ping)})
    assert status == 200 and "pong" in text

    status, _ = await post(url, payload, {**headers, "X-Hub-Signature-256": signed(payload)})
    assert status == 200
    repo_obj = get(kubectl, "gitrepository", "repo", namespace)
    requested = repo_obj["metadata"]["annotations"][REQUESTED_AT]
    ks = get(kubectl, "kustomization", "apps", namespace)
    assert ks["metadata"]["annotations"][REQUESTED_AT]
    untouched = get(kubectl, "kustomization", "untouched", namespace)
    assert REQUESTED_AT not in (untouched["metadata"].get("annotations") or {})

    status, _ = await post(url, b"x" * ((3 << 20) + 10), {**headers, "X-Hub-Signature-256": "sha256=00"})
    assert status == 413
    status, _ = await post(endpoints.receiver_url + "/hook/" + "0" * 64, payload, headers)
    assert status == 404

    if not both:
        pytest.skip("source/kustomize controllers not installed: requestedAt checked, reconcile not")

    def handled() -> bool:
        return bool(
            get(kubectl, "gitrepository", "repo", namespace).get("status", {}).get("lastHandledReconcileAt")
            == requested
        )

    await wait_until(handled, 60, "GitRepository lastHandledReconcileAt")
    await wait_until(
        lambda: (get(kubectl, "kustomization", "apps", namespace).get("status") or {}).get(
            "lastHandledReconcileAt"
        ),
        60,
        "Kustomization lastHandledReconcileAt",
    )

    def configmap_value() -> str:
        out = kubectl("get", "configmap", "hooked", "-n", namespace, "-o", "json", check=False)
        return str(json.loads(out.stdout)["data"]["v"]) if out.returncode == 0 else ""

    await wait_until(lambda: configmap_value() == "1", 60, "first revision applied")
    # A new commit: with 1h intervals only the webhook can bring it in quickly.
    sha = repo.commit({"app/cm.yaml": CONFIGMAP.replace("'1'", "'2'")}, "v2")
    payload = json.dumps({"ref": "refs/heads/main", "after": sha}).encode()
    status, _ = await post(url, payload, {**headers, "X-Hub-Signature-256": signed(payload)})
    assert status == 200
    await wait_until(lambda: configmap_value() == "2", 60, "new revision applied after the webhook")
    applied = get(kubectl, "kustomization", "apps", namespace)["status"].get("lastAppliedRevision", "")
    assert applied.endswith(sha)


async def test_gitlab_and_generic_hmac_receivers(
    kubectl: Any, namespace: str, notification_controller: Any
) -> None:
    endpoints = notification_controller()
    objects: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "webhook-token", "namespace": namespace},
         "stringData": {"token": TOKEN}},
        {"apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository",
         "metadata": {"name": "repo", "namespace": namespace},
         "spec": {"url": "https://example.invalid/repo.git", "interval": "1h", "suspend": True}},
    ]  # fmt: skip
    for name, rtype, events in (("gl", "gitlab", ["Push Hook"]), ("hmac", "generic-hmac", [])):
        objects.append({
            "apiVersion": "notification.toolkit.fluxcd.io/v1", "kind": "Receiver",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"type": rtype, "events": events, "secretRef": {"name": "webhook-token"},
                     "resources": [{"kind": "GitRepository", "name": "repo"}]},
        })  # fmt: skip
    kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}))

    def path(name: str) -> str:
        return "/hook/" + hashlib.sha256(f"{TOKEN}{name}{namespace}".encode()).hexdigest()

    def published() -> bool:
        return all(
            (get(kubectl, "receiver", n, namespace).get("status") or {}).get("webhookPath") == path(n)
            for n in ("gl", "hmac")
        )

    await wait_until(published, 30, "webhook paths")
    await asyncio.sleep(1)

    def requested() -> str:
        annotations = get(kubectl, "gitrepository", "repo", namespace)["metadata"].get("annotations") or {}
        return str(annotations.get(REQUESTED_AT, ""))

    body = b'{"object_kind": "push"}'
    gl = endpoints.receiver_url + path("gl")
    assert (await post(gl, body, {"X-Gitlab-Token": "wrong", "X-Gitlab-Event": "Push Hook"}))[0] == 401
    assert (await post(gl, body, {"X-Gitlab-Token": TOKEN, "X-Gitlab-Event": "Tag Push Hook"}))[0] == 400
    assert requested() == ""
    assert (await post(gl, body, {"X-Gitlab-Token": TOKEN, "X-Gitlab-Event": "Push Hook"}))[0] == 200
    first = requested()
    assert first

    hm = endpoints.receiver_url + path("hmac")
    assert (await post(hm, body, {"X-Signature": "sha256=" + "0" * 64}))[0] == 401
    assert requested() == first
    await asyncio.sleep(0.01)
    signature = "sha512=" + hmac.new(TOKEN.encode(), body, hashlib.sha512).hexdigest()
    assert (await post(hm, body, {"X-Signature": signature}))[0] == 200
    assert requested() != first
