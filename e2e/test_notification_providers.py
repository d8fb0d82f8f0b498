"""Events reach provider services through Alerts: a real notification controller process, real
loopback HTTP servers standing in for Slack, Teams, GitHub, ... recording what they receive."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import shutil
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from e2e.fixtures.notification import NotificationEndpoints, RecordingServer

pytestmark = pytest.mark.e2e

SHA = "0123456789abcdef0123456789abcdef01234567"


def b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


def manifests(namespace: str, url: str) -> list[dict[str, Any]]:
    """One Provider (and Secret) per type, each pointed at its own path on the recording server."""
    providers: dict[str, tuple[dict[str, Any], dict[str, str] | None]] = {
        "generic": ({"address": f"{url}/generic"}, {"headers": "X-Team: platform\nX-Env: e2e\n"}),
        "generic-hmac": ({"address": f"{url}/hmac"}, {"token": "hmac-key"}),
        "slack": ({"address": f"{url}/slack", "channel": "alerts", "username": "tide"}, {"token": "xoxb-1"}),
        "msteams": ({"address": f"{url}/msteams"}, None),
        "discord": ({"address": f"{url}/discord"}, None),
        "googlechat": ({"address": f"{url}/googlechat"}, None),
        "rocket": ({"address": f"{url}/rocket"}, None),
        "telegram": ({"address": f"{url}/telegram", "channel": "-1001"}, {"token": "123:abc"}),
        "matrix": ({"address": f"{url}/matrix", "channel": "!room:local"}, {"token": "mx-token"}),
        "alertmanager": ({"address": f"{url}/alertmanager/api/v2/alerts"}, {"token": "am-token"}),
        "grafana": ({"address": f"{url}/grafana/api/annotations"}, {"username": "admin", "password": "pw"}),
        "opsgenie": ({"address": f"{url}/opsgenie/v2/alerts"}, {"token": "genie"}),
        "pagerduty": ({"address": f"{url}/pagerduty", "channel": "routing-key"}, None),
        "github": ({"address": f"{url}/org/ghrepo"}, {"token": "ghp_x"}),
        "gitlab": ({"address": f"{url}/group/glrepo.git"}, {"token": "glpat_x"}),
        "gitea": ({"address": f"{url}/org/gtrepo"}, {"token": "gitea_x"}),
        "bitbucket": ({"address": f"{url}/team/bbrepo"}, {"token": "user:app-pass"}),
    }
    objs: list[dict[str, Any]] = []
    for ptype, (spec, secret) in providers.items():
        name = ptype.replace("-", "")
        full_spec: dict[str, Any] = {"type": ptype, "timeout": "5s", **spec}
        if secret is not None:
            objs.append(
                {
                    "apiVersion": "v1",
                    "kind": "Secret",
                    "metadata": {"name": name, "namespace": namespace},
                    "stringData": secret,
                }
            )
            full_spec["secretRef"] = {"name": name}
        objs.append(
            {
                "apiVersion": "notification.toolkit.fluxcd.io/v1beta3",
                "kind": "Provider",
                "metadata": {"name": name, "namespace": namespace},
                "spec": full_spec,
            }
        )
        objs.append(
            {
                "apiVersion": "notification.toolkit.fluxcd.io/v1beta3",
                "kind": "Alert",
                "metadata": {"name": name, "namespace": namespace},
                "spec": {
                    "providerRef": {"name": name},
                    "summary": "e2e cluster",
                    "eventSources": [{"kind": "Kustomization", "name": "*"}],
                    "exclusionList": ["^excluded"],
                },
            }
        )
    return objs


def kustomization_event(namespace: str, message: str, severity: str = "info") -> dict[str, Any]:
    return {
        "involvedObject": {
            "kind": "Kustomization",
            "namespace": namespace,
            "name": "apps",
            "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
            "uid": "u-1",
        },
        "severity": severity,
        "timestamp": "2026-11-26T04:00:00Z",
        "message": message,
        "reason": "ReconciliationSucceeded",
        "metadata": {
            "kustomize.toolkit.fluxcd.io/revision": f"main@sha1:{SHA}",
            "kustomize.toolkit.fluxcd.io/commit_status": "update",
        },
        "reportingController": "kustomize-controller",
        "reportingInstance": "e2e",
    }


async def post_event(endpoints: NotificationEndpoints, event: dict[str, Any]) -> int:
    async with aiohttp.ClientSession() as session, session.post(endpoints.events_url, json=event) as resp:
        return resp.status


async def test_alerts_deliver_to_every_provider_type(
    kubectl: Any, namespace: str, recording_server: RecordingServer, notification_controller: Any
) -> None:
    endpoints = notification_controller()
    kubectl(
        "apply",
        "-f",
        "-",
        input=json.dumps(
            {"apiVersion": "v1", "kind": "List", "items": manifests(namespace, recording_server.url)}
        ),
    )
    recording_server.fail_first["/generic"] = 2  # delivered on the third attempt
    await asyncio.sleep(2)  # Alerts reach the controller's watch cache

    status = await post_event(endpoints, kustomization_event(namespace, "Applied revision: main"))
    assert status == 202
    assert await post_event(endpoints, kustomization_event(namespace, "Applied revision: main")) == 429

    srv = recording_server
    [generic] = (await srv.wait_for("/generic", 3))[-1:]
    body = generic.json()
    assert body["involvedObject"]["name"] == "apps"
    assert body["metadata"] == {
        "revision": f"main@sha1:{SHA}",
        "commit_status": "update",
        "summary": "e2e cluster",
    }
    assert generic.headers["gotk-component"] == "kustomize-controller"
    assert generic.headers["X-Team"] == "platform" and generic.headers["X-Env"] == "e2e"

    [signed] = await srv.wait_for("/hmac")
    expected = hmac.new(b"hmac-key", signed.body, hashlib.sha256).hexdigest()
    assert signed.headers["X-Signature"] == f"sha256={expected}"

    [slack] = await srv.wait_for("/slack")
    assert slack.headers["Authorization"] == "Bearer xoxb-1"
    assert slack.json()["channel"] == "alerts" and slack.json()["username"] == "tide"
    assert slack.json()["attachments"][0]["author_name"] == f"kustomization/apps.{namespace}"

    [teams] = await srv.wait_for("/msteams")
    assert teams.json()["attachments"][0]["content"]["type"] == "AdaptiveCard"
    [discord] = await srv.wait_for("/discord/slack")
    assert discord.json()["attachments"][0]["color"] == "good"
    [chat] = await srv.wait_for("/googlechat")
    assert chat.json()["cards"][0]["header"]["title"] == f"kustomization/apps.{namespace}"
    [rocket] = await srv.wait_for("/rocket")
    assert rocket.json()["attachments"][0]["text"] == "Applied revision: main"

    [telegram] = await srv.wait_for("/telegram/bot123:abc/sendMessage")
    assert telegram.json()["chat_id"] == "-1001"
    [matrix] = await srv.wait_for("/matrix/_matrix/client/r0/rooms/!room:local/send/m.room.message/")
    assert matrix.method == "PUT" and matrix.headers["Authorization"] == "Bearer mx-token"

    [am] = await srv.wait_for("/alertmanager/api/v2/alerts")
    assert am.json()[0]["labels"]["alertname"] == "FluxKustomizationReconciliationSucceeded"
    assert am.headers["Authorization"] == "Bearer am-token"
    [grafana] = await srv.wait_for("/grafana/api/annotations")
    assert grafana.headers["Authorization"] == "Basic " + b64("admin:pw")
    assert "flux" in grafana.json()["tags"]
    [genie] = await srv.wait_for("/opsgenie/v2/alerts")
    assert genie.headers["Authorization"] == "GenieKey genie"
    await srv.wait_for("/pagerduty/v2/enqueue")
    await srv.wait_for("/pagerduty/v2/change/enqueue")

    [gh] = await srv.wait_for(f"/api/v3/repos/org/ghrepo/statuses/{SHA}")
    assert gh.headers["Authorization"] == "Bearer ghp_x"
    assert gh.json()["state"] == "success"
    assert gh.json()["context"].startswith("e2e cluster/kustomization/apps")
    [gl] = await srv.wait_for(f"/api/v4/projects/group%2Fglrepo/statuses/{SHA}")
    assert gl.headers["PRIVATE-TOKEN"] == "glpat_x"
    [gt] = await srv.wait_for(f"/api/v1/repos/org/gtrepo/statuses/{SHA}")
    assert gt.headers["Authorization"] == "token gitea_x"
    [bb] = await srv.wait_for(f"/2.0/repositories/team/bbrepo/commit/{SHA}/statuses/build")
    assert bb.headers["Authorization"] == "Basic " + b64("user:app-pass")
    assert bb.json()["state"] == "SUCCESSFUL"

    # An excluded message goes nowhere: the next event reaching the provider shows it was routed.
    assert await post_event(endpoints, kustomization_event(namespace, "excluded: nothing to see")) == 202
    assert await post_event(endpoints, kustomization_event(namespace, "after the excluded one")) == 202
    await srv.wait_for("/generic", 4)
    assert not [r for r in srv.received if b"excluded: nothing to see" in r.body]

    # Malformed bodies are rejected, the server keeps serving.
    async with aiohttp.ClientSession() as session:
        async with session.post(endpoints.events_url, data=b"{not json") as resp:
            assert resp.status == 400
        async with session.post(endpoints.events_url, data=b"x" * (2 << 20)) as resp:
            assert resp.status == 413
    assert await post_event(endpoints, kustomization_event(namespace, "still alive")) == 202
    await srv.wait_for("/generic", 5)


async def test_suspended_alert_and_provider_send_nothing(
    kubectl: Any, namespace: str, recording_server: RecordingServer, notification_controller: Any
) -> None:
    endpoints = notification_controller()
    url = recording_server.url
    items = [
        {
            "apiVersion": "notification.toolkit.fluxcd.io/v1beta3",
            "kind": "Provider",
            "metadata": {"name": "on", "namespace": namespace},
            "spec": {"type": "generic", "address": f"{url}/on"},
        },
        {
            "apiVersion": "notification.toolkit.fluxcd.io/v1beta3",
            "kind": "Provider",
            "metadata": {"name": "off", "namespace": namespace},
            "spec": {"type": "generic", "address": f"{url}/off", "suspend": True},
        },
        {
            "apiVersion": "notification.toolkit.fluxcd.io/v1beta3",
            "kind": "Alert",
            "metadata": {"name": "suspended", "namespace": namespace},
            "spec": {
                "providerRef": {"name": "on"},
                "suspend": True,
                "eventSources": [{"kind": "Kustomization", "name": "apps"}],
            },
        },
        {
            "apiVersion": "notification.toolkit.fluxcd.io/v1beta3",
            "kind": "Alert",
            "metadata": {"name": "to-suspended-provider", "namespace": namespace},
            "spec": {
                "providerRef": {"name": "off"},
                "eventSources": [{"kind": "Kustomization", "name": "apps"}],
            },
        },
        {
            "apiVersion": "notification.toolkit.fluxcd.io/v1beta3",
            "kind": "Alert",
            "metadata": {"name": "errors-only", "namespace": namespace},
            "spec": {
                "providerRef": {"name": "on"},
                "eventSeverity": "error",
                "eventSources": [{"kind": "Kustomization", "name": "apps"}],
            },
        },
    ]
    kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))
    await asyncio.sleep(2)
    # Each negative check sits between two error events that errors-only delivers: the events
    # around it were routed, so it was too.
    error = kustomization_event(namespace, "Health check failed", "error")
    assert await post_event(endpoints, error) == 202
    await recording_server.wait_for("/on")
    assert await post_event(endpoints, kustomization_event(namespace, "info only")) == 202
    assert await post_event(endpoints, {**error, "message": "Health check failed again"}) == 202
    got = await recording_server.wait_for("/on", 2)
    assert [r.json()["message"] for r in got] == ["Health check failed", "Health check failed again"]
    assert recording_server.matching("/off") == []  # to-suspended-provider had both errors too


def _installed(name: str) -> bool:
    return shutil.which(name, path=str(Path(sys.executable).parent)) is not None


def _flux(kind: str, name: str, namespace: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "notification.toolkit.fluxcd.io/v1beta3",
        "kind": kind,
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


async def test_controller_events_reach_providers(
    kubectl: Any,
    namespace: str,
    recording_server: RecordingServer,
    notification_controller: Any,
    source_controller: Any,
    start_controller: Any,
    git_server: Any,
) -> None:
    """Events from the real source and kustomize controllers reach a generic and a signed webhook
    through Alerts; the Alert that excludes every message sends nothing."""
    if not (_installed("tide-source-controller") and _installed("tide-kustomize-controller")):
        pytest.skip("source/kustomize controllers are not installed yet")
    endpoints = notification_controller()
    configmap = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: evented\ndata:\n  v: '1'\n"
    repo = git_server.create_repo(f"events-{namespace}", {"app/cm.yaml": configmap})
    url = recording_server.url
    items = [
        _flux("Provider", "hook", namespace, {"type": "generic", "address": f"{url}/hook"}),
        _flux("Alert", "sources", namespace, {
            "providerRef": {"name": "hook"},
            "eventSources": [{"kind": "GitRepository", "name": "*"}],
        }),
        _flux("Alert", "excluded", namespace, {
            "providerRef": {"name": "hook"},
            "exclusionList": ["stored artifact", "^.*$"],
            "eventSources": [{"kind": "GitRepository", "name": "*"}, {"kind": "Kustomization", "name": "*"}],
            "summary": "must-not-arrive",
        }),
        _flux("Provider", "ks-hook", namespace, {"type": "generic-hmac", "address": f"{url}/ks",
                                                  "secretRef": {"name": "ks-hook"}}),
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "ks-hook", "namespace": namespace},
         "stringData": {"token": "ks-key"}},
        _flux("Alert", "kustomizations", namespace, {
            "providerRef": {"name": "ks-hook"},
            "eventSources": [{"kind": "Kustomization", "name": "apps"}],
        }),
    ]  # fmt: skip
    kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))
    await asyncio.sleep(2)
    source = source_controller(f"--events-addr={endpoints.events_url}")
    start_controller(
        "kustomize",
        f"--events-addr={endpoints.events_url}",
        f"--source-storage-addr={source.address}",
        "--watch-all-namespaces=false",
        f"--runtime-namespace={namespace}",
    )
    objects = [
        {
            "apiVersion": "source.toolkit.fluxcd.io/v1",
            "kind": "GitRepository",
            "metadata": {"name": "repo", "namespace": namespace},
            "spec": {"url": repo.public_http_url, "interval": "10m", "ref": {"branch": "main"}},
        },
        {
            "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
            "kind": "Kustomization",
            "metadata": {"name": "apps", "namespace": namespace},
            "spec": {"interval": "10m", "prune": True, "path": "./app", "targetNamespace": namespace,
                     "sourceRef": {"kind": "GitRepository", "name": "repo"}},
        },
    ]  # fmt: skip
    kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}))

    [got] = await recording_server.wait_for("/hook", timeout=60)
    event = got.json()
    assert event["involvedObject"]["kind"] == "GitRepository"
    assert event["involvedObject"]["name"] == "repo"
    assert event["reportingController"] == "source-controller"
    assert repo.head() in event["metadata"].get("revision", "")
    assert got.headers["gotk-component"] == "source-controller"

    [ks] = await recording_server.wait_for(
        "/ks", timeout=90, where=lambda r: "evented" in r.json()["message"]
    )
    ks_event = ks.json()
    assert ks_event["involvedObject"] == {
        **ks_event["involvedObject"],
        "kind": "Kustomization",
        "name": "apps",
    }
    assert ks_event["reportingController"] == "kustomize-controller"
    assert "evented" in ks_event["message"]
    assert ks_event["metadata"]["revision"].endswith(repo.head())
    expected = hmac.new(b"ks-key", ks.body, hashlib.sha256).hexdigest()
    assert ks.headers["X-Signature"] == f"sha256={expected}"

    # The excluded Alert saw both events above (GitRepository and Kustomization) and sent neither.
    assert all("summary" not in r.json().get("metadata", {}) for r in recording_server.matching("/hook"))


async def test_provider_custom_ca_and_proxy(
    kubectl: Any,
    namespace: str,
    recording_server: RecordingServer,
    notification_controller: Any,
    tmp_path: Path,
) -> None:
    """certSecretRef's CA makes an HTTPS service with a private CA trusted (and only then);
    proxySecretRef sends through an authenticated HTTP proxy."""
    import ssl
    import urllib.request

    from e2e.fixtures.git import make_pki

    pki = make_pki(tmp_path / "pki")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pki.server_cert, pki.server_key)
    https = await RecordingServer(ssl_context=context).start()
    try:
        endpoints = notification_controller()
        items = [
            {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "ca", "namespace": namespace},
             "stringData": {"ca.crt": pki.ca_pem.decode()}},
            {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "proxy", "namespace": namespace},
             "stringData": {"address": recording_server.url, "username": "pu", "password": "pp"}},
            _flux("Provider", "trusted", namespace, {"type": "generic", "address": f"{https.url}/trusted",
                                                     "certSecretRef": {"name": "ca"}}),
            _flux("Provider", "untrusted", namespace, {"type": "generic",
                                                       "address": f"{https.url}/untrusted"}),
            _flux("Provider", "proxied", namespace, {"type": "generic", "address": "http://hooks.example.invalid/in",
                                                     "proxySecretRef": {"name": "proxy"}}),
        ]  # fmt: skip
        for name in ("trusted", "untrusted", "proxied"):
            sources = [{"kind": "Kustomization", "name": "apps"}]
            items.append(
                _flux("Alert", name, namespace, {"providerRef": {"name": name}, "eventSources": sources})
            )
        kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))
        await asyncio.sleep(2)
        assert await post_event(endpoints, kustomization_event(namespace, "over TLS")) == 202

        [trusted] = await https.wait_for("/trusted")
        assert trusted.json()["message"] == "over TLS"
        [proxied] = await recording_server.wait_for("http://hooks.example.invalid/in")
        assert proxied.headers["Proxy-Authorization"] == "Basic " + b64("pu:pp")
        assert proxied.json()["message"] == "over TLS"

        def failed_metric() -> float:
            with urllib.request.urlopen(endpoints.process.metrics_url, timeout=5) as resp:
                text = resp.read().decode()
            for line in text.splitlines():
                if (line.startswith("tide_notification_requests_total{") and 'provider="untrusted"' in line
                        and 'result="failed"' in line):  # fmt: skip
                    return float(line.rsplit(" ", 1)[1])
            return 0.0

        for _ in range(100):  # 4 attempts with backoff
            if failed_metric() >= 1:
                break
            await asyncio.sleep(0.2)
        assert failed_metric() == 1
        assert https.matching("/untrusted") == []
    finally:
        await https.stop()


async def test_invalid_provider_and_alert_are_reported(
    kubectl: Any, namespace: str, notification_controller: Any
) -> None:
    """Errors a user can cause become Warning events on their object (Alert and Provider have no
    status in v1beta3)."""
    notification_controller()
    items = [
        _flux("Provider", "unsupported", namespace, {"type": "sentry", "address": "https://sentry.example/1"}),
        _flux("Provider", "no-secret", namespace, {"type": "slack", "address": "https://hooks.example/x",
                                                   "secretRef": {"name": "missing"}}),
        _flux("Provider", "fine", namespace, {"type": "generic", "address": "http://127.0.0.1:1/"}),
        _flux("Alert", "bad-regex", namespace, {"providerRef": {"name": "fine"},
                                                "exclusionList": ["(unclosed"],
                                                "eventSources": [{"kind": "Kustomization", "name": "*"}]}),
    ]  # fmt: skip
    kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))

    def warnings() -> dict[tuple[str, str], str]:
        events = json.loads(kubectl("get", "events", "-n", namespace, "-o", "json").stdout)["items"]
        return {
            (e["involvedObject"]["kind"], e["involvedObject"]["name"]): e["reason"]
            for e in events
            if e.get("type") == "Warning"
        }

    expected = {
        ("Provider", "unsupported"): "ValidationFailed",
        ("Provider", "no-secret"): "SecretNotFound",
        ("Alert", "bad-regex"): "ValidationFailed",
    }
    for _ in range(150):
        found = warnings()
        if all(found.get(k) == v for k, v in expected.items()):
            break
        await asyncio.sleep(0.2)
    found = warnings()
    assert {k: found.get(k) for k in expected} == expected
    assert ("Provider", "fine") not in found
