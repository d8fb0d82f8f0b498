"""Each provider type builds the request its service expects (URL, headers, body)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import pytest

from tide.controllers.notification.events import Event, InvolvedObject
from tide.controllers.notification.providers import (
    BUILDERS,
    GIT_ADDRESS_TYPES,
    ProviderConfig,
    ProviderConfigError,
    build_requests,
)
from tide.controllers.notification.providers.config import parse_duration, resolve_provider
from tide.controllers.notification.providers.gitstatus import commit_sha, parse_repository
from tide.controllers.notification.providers.telegram import escape_markdown_v2

SHA = "a" * 40


def event(
    severity: str = "info", metadata: dict[str, str] | None = None, reason: str = "ReconciliationSucceeded"
) -> Event:
    return Event(
        involved_object=InvolvedObject(
            kind="Kustomization",
            name="app",
            namespace="apps",
            api_version="kustomize.toolkit.fluxcd.io/v1",
            uid="uid-1",
        ),
        severity=severity,
        timestamp="2026-11-26T04:00:00Z",
        message="Applied revision: main@sha1:" + SHA,
        reason=reason,
        reporting_controller="kustomize-controller",
        metadata={"revision": f"main@sha1:{SHA}"} if metadata is None else metadata,
    )


def cfg(type_: str, **kw: object) -> ProviderConfig:
    kw.setdefault("address", "http://127.0.0.1:8000/hook")
    kw.setdefault("name", "p")
    kw.setdefault("namespace", "apps")
    kw.setdefault("uid", "0123456789abcdef")
    return ProviderConfig(type=type_, **kw)  # type: ignore[arg-type]


def test_every_type_in_the_brief_is_supported():
    assert set(BUILDERS) >= {
        "generic",
        "generic-hmac",
        "slack",
        "msteams",
        "discord",
        "googlechat",
        "rocket",
        "mattermost",
        "telegram",
        "matrix",
        "alertmanager",
        "grafana",
        "opsgenie",
        "pagerduty",
        "github",
        "gitlab",
        "gitea",
        "bitbucket",
    }


def test_unknown_type():
    with pytest.raises(ProviderConfigError):
        build_requests(cfg("carrier-pigeon"), event())


def test_generic_posts_event_json_with_headers():
    [r] = build_requests(cfg("generic", headers={"X-Team": "a"}, username="u", password="p"), event())
    assert r.method == "POST" and r.url == "http://127.0.0.1:8000/hook"
    assert r.headers["gotk-component"] == "kustomize-controller"
    assert r.headers["X-Team"] == "a"
    assert r.headers["Authorization"] == "Basic " + base64.b64encode(b"u:p").decode()
    assert r.json()["involvedObject"]["name"] == "app"
    assert r.json()["metadata"]["revision"].endswith(SHA)


def test_generic_hmac_signs_the_exact_body():
    [r] = build_requests(cfg("generic-hmac", token="s3cret"), event())
    expected = hmac.new(b"s3cret", r.body, hashlib.sha256).hexdigest()
    assert r.headers["X-Signature"] == f"sha256={expected}"
    with pytest.raises(ProviderConfigError):
        build_requests(cfg("generic-hmac"), event())


def test_slack_payload_and_bot_token():
    [r] = build_requests(cfg("slack", channel="general", token="xoxb"), event(severity="error"))
    body = r.json()
    assert body["channel"] == "general" and body["username"] == "kustomize-controller"
    att = body["attachments"][0]
    assert att["color"] == "danger"
    assert att["author_name"] == "kustomization/app.apps"
    assert att["fields"] == [{"title": "revision", "value": f"main@sha1:{SHA}", "short": False}]
    assert r.headers["Authorization"] == "Bearer xoxb"


def test_discord_uses_slack_endpoint():
    [r] = build_requests(cfg("discord", address="http://h/api/webhooks/1/x"), event())
    assert r.url == "http://h/api/webhooks/1/x/slack"
    assert r.json()["attachments"][0]["color"] == "good"


@pytest.mark.parametrize("kind", ["rocket", "mattermost"])
def test_slack_compatible(kind: str):
    [r] = build_requests(cfg(kind, username="flux"), event())
    assert r.json()["username"] == "flux"
    assert "Authorization" not in r.headers


def test_msteams_card_formats():
    [legacy] = build_requests(cfg("msteams", address="https://x.webhook.office.com/webhookb2/1"), event())
    assert legacy.json()["@type"] == "MessageCard"
    assert legacy.json()["sections"][0]["facts"][0]["name"] == "revision"
    [adaptive] = build_requests(cfg("msteams"), event(severity="error"))
    content = adaptive.json()["attachments"][0]["content"]
    assert content["type"] == "AdaptiveCard"
    assert content["body"][1]["text"].startswith("Applied revision")


def test_googlechat():
    [r] = build_requests(cfg("googlechat"), event())
    card = r.json()["cards"][0]
    assert card["header"]["title"] == "kustomization/app.apps"
    assert card["sections"][1]["widgets"][0]["keyValue"]["topLabel"] == "revision"


def test_telegram_send_message():
    [r] = build_requests(cfg("telegram", address="", token="123:ABC", channel="-100"), event())
    assert r.url == "https://api.telegram.org/bot123:ABC/sendMessage"
    body = r.json()
    assert body["chat_id"] == "-100" and body["parse_mode"] == "MarkdownV2"
    assert "kustomization/app\\.apps" in body["text"]
    assert escape_markdown_v2("a_b.c!") == "a\\_b\\.c\\!"
    with pytest.raises(ProviderConfigError):
        build_requests(cfg("telegram", token="t"), event())


def test_matrix_put_is_idempotent():
    [r] = build_requests(cfg("matrix", address="http://m", token="tok", channel="!room:m"), event())
    assert r.method == "PUT"
    assert r.url.startswith("http://m/_matrix/client/r0/rooms/%21room%3Am/send/m.room.message/")
    assert r.headers["Authorization"] == "Bearer tok"
    assert r.json()["msgtype"] == "m.text"
    [again] = build_requests(cfg("matrix", address="http://m", token="tok", channel="!room:m"), event())
    assert again.url == r.url


def test_alertmanager():
    [r] = build_requests(
        cfg("alertmanager", token="t"), event(severity="error", metadata={"summary": "s", "revision": "r"})
    )
    [alert] = r.json()
    assert alert["labels"]["alertname"] == "FluxKustomizationReconciliationSucceeded"
    assert alert["labels"]["severity"] == "error" and alert["labels"]["revision"] == "r"
    assert "summary" not in alert["labels"] and alert["annotations"]["summary"] == "s"
    assert alert["status"] == "firing" and alert["startsAt"] == "2026-11-26T04:00:00Z"
    assert r.headers["Authorization"] == "Bearer t"


def test_grafana_annotation():
    [r] = build_requests(cfg("grafana", username="admin", password="pw"), event())
    body = r.json()
    assert "flux" in body["tags"] and f"revision: main@sha1:{SHA}" in body["tags"]
    assert body["time"] == 1795665600000
    assert r.headers["Authorization"].startswith("Basic ")


def test_opsgenie():
    [r] = build_requests(cfg("opsgenie", token="key"), event())
    assert r.headers["Authorization"] == "GenieKey key"
    assert r.json()["message"] == "Kustomization/app"


def test_pagerduty_trigger_and_resolve():
    [trigger] = build_requests(cfg("pagerduty", address="http://pd", channel="rk"), event(severity="error"))
    assert trigger.url == "http://pd/v2/enqueue"
    assert trigger.json()["event_action"] == "trigger" and trigger.json()["routing_key"] == "rk"
    resolve, change = build_requests(cfg("pagerduty", address="http://pd", channel="rk"), event())
    assert resolve.json()["event_action"] == "resolve"
    assert resolve.json()["dedup_key"] == trigger.json()["dedup_key"]
    assert change.url == "http://pd/v2/change/enqueue"


def test_github_commit_status():
    c = cfg("github", address="https://github.com/org/repo.git", token="ghp")
    [r] = build_requests(c, event())
    assert r.url == f"https://api.github.com/repos/org/repo/statuses/{SHA}"
    assert r.json() == {
        "state": "success",
        "context": "kustomization/app/0123456789",
        "description": "reconciliation succeeded",
    }
    assert r.headers["Authorization"] == "Bearer ghp"
    [enterprise] = build_requests(
        cfg("github", address="http://127.0.0.1:3000/org/repo", token="t"), event(severity="error")
    )
    assert enterprise.url == f"http://127.0.0.1:3000/api/v3/repos/org/repo/statuses/{SHA}"
    assert enterprise.json()["state"] == "failure"


def test_commit_status_skipped_without_revision_or_when_progressing():
    c = cfg("github", address="https://github.com/org/repo", token="t")
    assert build_requests(c, event(metadata={})) == []
    assert build_requests(c, event(reason="Progressing")) == []


def test_gitlab_commit_status():
    [r] = build_requests(
        cfg("gitlab", address="https://gitlab.com/group/sub/repo", token="glpat"), event(severity="error")
    )
    assert r.url == f"https://gitlab.com/api/v4/projects/group%2Fsub%2Frepo/statuses/{SHA}"
    assert r.json()["state"] == "failed"
    assert r.headers["PRIVATE-TOKEN"] == "glpat"


def test_gitea_commit_status():
    [r] = build_requests(cfg("gitea", address="ssh://git@gitea.local:2222/org/repo.git", token="t"), event())
    assert r.url == f"https://gitea.local/api/v1/repos/org/repo/statuses/{SHA}"
    assert r.headers["Authorization"] == "token t"


def test_bitbucket_commit_status():
    [r] = build_requests(
        cfg("bitbucket", address="https://bitbucket.org/team/repo", token="user:app"), event()
    )
    assert r.url == f"https://api.bitbucket.org/2.0/repositories/team/repo/commit/{SHA}/statuses/build"
    assert r.json()["state"] == "SUCCESSFUL" and len(r.json()["key"]) == 40
    assert r.headers["Authorization"] == "Basic " + base64.b64encode(b"user:app").decode()
    with pytest.raises(ProviderConfigError):
        build_requests(cfg("bitbucket", address="https://bitbucket.org/team/repo", token="nocolon"), event())


def test_revisions_and_repository_addresses():
    assert commit_sha(f"main@sha1:{SHA}") == SHA
    assert commit_sha(f"sha1:{SHA}") == SHA
    assert commit_sha(f"main/{SHA}") == SHA
    assert commit_sha(f"refs/heads/main@sha1:{SHA}") == SHA
    with pytest.raises(ProviderConfigError):
        commit_sha("v1.2.3")
    assert parse_repository("git@github.com:org/repo.git").path == "org/repo"
    assert parse_repository("https://host:8443/a/b").host == "https://host:8443"


def b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


def test_resolve_provider_from_secrets():
    provider = {
        "metadata": {"name": "p", "namespace": "apps", "uid": "u"},
        "spec": {
            "type": "generic",
            "address": "http://spec",
            "channel": "c",
            "timeout": "1m30s",
            "secretRef": {"name": "s"},
        },
    }
    secret = {
        "data": {
            "address": b64("http://secret"),
            "token": b64("tok\n"),
            "username": b64("u"),
            "password": b64("p"),
            "headers": b64("X-A: 1\nX-B: two\n"),
        }
    }
    cert = {"data": {"ca.crt": b64("PEM")}}
    proxy = {"data": {"address": b64("http://proxy:3128"), "username": b64("pu"), "password": b64("pp")}}
    c = resolve_provider(provider, secret, cert, proxy)
    assert c.address == "http://secret" and c.token == "tok" and c.channel == "c"
    assert c.headers == {"X-A": "1", "X-B": "two"}
    assert c.timeout == 90 and c.ca_pem == b"PEM"
    assert (c.proxy, c.proxy_username, c.proxy_password) == ("http://proxy:3128", "pu", "pp")
    assert resolve_provider(provider).address == "http://spec"
    with pytest.raises(ProviderConfigError):
        resolve_provider(provider, {"data": {"headers": b64("- a\n- b\n")}})
    with pytest.raises(ProviderConfigError):
        resolve_provider(provider, None, {"data": {}})


def test_durations():
    assert parse_duration("500ms") == 0.5
    assert parse_duration("1h2m3s") == 3723
    with pytest.raises(ValueError):
        parse_duration("5 minutes")


def test_bodies_are_json():
    for name in BUILDERS:
        address = {
            "bitbucketserver": "https://bb/scm/P/r.git",
            "azuredevops": "https://dev.azure.com/o/p/_git/r",
        }.get(name, "https://github.com/o/r" if name in GIT_ADDRESS_TYPES else "http://127.0.0.1:1/x")
        c = cfg(name, token="u:t", channel="c", address=address)
        for r in build_requests(c, event()):
            json.loads(r.body)
            assert r.headers["Content-Type"] == "application/json"


def test_bitbucketserver_build_status():
    c = cfg("bitbucketserver", address="https://bb.example.com/scm/PROJ/repo.git", token="pat")
    [r] = build_requests(c, event(severity="error"))
    assert r.url == f"https://bb.example.com/rest/api/1.0/projects/PROJ/repos/repo/commits/{SHA}/builds"
    assert r.headers["Authorization"] == "Bearer pat"
    assert r.json()["state"] == "FAILED"
    basic = cfg(
        "bitbucketserver", address="https://bb.example.com/scm/PROJ/repo.git", username="u", password="p"
    )
    assert (
        build_requests(basic, event())[0].headers["Authorization"]
        == "Basic " + base64.b64encode(b"u:p").decode()
    )


def test_azuredevops_commit_status():
    c = cfg("azuredevops", address="https://dev.azure.com/org/proj/_git/repo", token="pat")
    [r] = build_requests(c, event())
    assert r.url == (
        f"https://dev.azure.com/org/proj/_apis/git/repositories/repo/commits/{SHA}/statuses?api-version=6.0"
    )
    assert r.json()["state"] == "succeeded" and r.json()["context"]["genre"] == "fluxcd"
    assert r.headers["Authorization"] == "Basic " + base64.b64encode(b":pat").decode()
    with pytest.raises(ProviderConfigError):
        build_requests(cfg("azuredevops", address="https://dev.azure.com/org/repo", token="t"), event())


def test_githubdispatch():
    [r] = build_requests(cfg("githubdispatch", address="https://github.com/org/repo", token="t"), event())
    assert r.url == "https://api.github.com/repos/org/repo/dispatches"
    assert r.json()["event_type"] == "Kustomization/app.apps"
    assert r.json()["client_payload"]["involvedObject"]["name"] == "app"


def test_webex_lark_datadog():
    [webex] = build_requests(cfg("webex", address="", token="bot", channel="room"), event())
    assert webex.url == "https://webexapis.com/v1/messages" and webex.json()["roomId"] == "room"
    assert "**kustomization/app.apps**" in webex.json()["markdown"]
    [lark] = build_requests(cfg("lark"), event(severity="error"))
    assert lark.json()["card"]["header"]["template"] == "red"
    [dd] = build_requests(cfg("datadog", address="https://api.datadoghq.eu", token="k"), event())
    assert dd.url == "https://api.datadoghq.eu/api/v1/events" and dd.headers["DD-API-KEY"] == "k"
    assert "source:fluxcd" in dd.json()["tags"] and dd.json()["alert_type"] == "info"


def test_commit_status_expr():
    from dataclasses import replace

    from tide.controllers.notification.providers.config import commit_status_id

    e = event(metadata={"revision": f"main@sha1:{SHA}", "env": "prod"})
    status = commit_status_id(
        "event.involvedObject.kind + '/' + event.involvedObject.name + '/' + event.metadata.env + '/' + "
        "alert.metadata.name + '/' + provider.metadata.name",
        e.to_json(), {"metadata": {"name": "a"}}, {"metadata": {"name": "p"}},
    )  # fmt: skip
    assert status == "Kustomization/app/prod/a/p"
    c = replace(cfg("github", address="https://github.com/o/r", token="t"), commit_status_id=status)
    assert build_requests(c, e)[0].json()["context"] == status
    with pytest.raises(ProviderConfigError):
        commit_status_id("1 + 1", e.to_json(), {}, {})
    with pytest.raises(ProviderConfigError):
        commit_status_id("event.nope.x", e.to_json(), {}, {})
