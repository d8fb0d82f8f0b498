"""Receiver validation per type: signatures and tokens, events filters, ping, webhook path."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest

from tide.controllers.notification.receivers import (
    label_selector,
    requested_at_value,
    resource_api_version,
    validate_gcr_claims,
    validate_request,
    webhook_path,
)

TOKEN = "s3cret-token"
BODY = json.dumps({"ref": "refs/heads/main", "after": "a" * 40}).encode()


def sig(algo: str, body: bytes = BODY, key: str = TOKEN) -> str:
    return f"{algo}=" + hmac.new(key.encode(), body, getattr(hashlib, algo)).hexdigest()


def test_webhook_path_is_flux_digest():
    digest = hashlib.sha256(b"tokenreceiverflux-system").hexdigest()
    assert webhook_path("token", "receiver", "flux-system") == f"/hook/{digest}"


def test_generic_relies_on_the_path():
    assert validate_request("generic", TOKEN, {}, b"").ok


@pytest.mark.parametrize("algo", ["sha1", "sha256", "sha512"])
def test_generic_hmac_algorithms(algo: str):
    assert validate_request("generic-hmac", TOKEN, {"X-Signature": sig(algo)}, BODY).ok


@pytest.mark.parametrize("header", [None, "", "sha256=", "md5=abcd", "sha256=" + "0" * 64, "garbage"])
def test_generic_hmac_rejects(header: str | None):
    headers = {} if header is None else {"X-Signature": header}
    v = validate_request("generic-hmac", TOKEN, headers, BODY)
    assert v.status == 401 and not v.act


def test_generic_hmac_wrong_key_or_body():
    assert (
        validate_request("generic-hmac", TOKEN, {"X-Signature": sig("sha256", key="other")}, BODY).status
        == 401
    )
    assert validate_request("generic-hmac", TOKEN, {"X-Signature": sig("sha256")}, BODY + b" ").status == 401


def test_github_push_sha256_and_events_filter():
    headers = {
        "X-Hub-Signature-256": sig("sha256"),
        "X-GitHub-Event": "push",
        "Content-Type": "application/json",
    }
    v = validate_request("github", TOKEN, headers, BODY, ["push"])
    assert v.ok and v.act and v.event == "push"
    assert validate_request("github", TOKEN, headers, BODY, ["Push", "release"]).ok
    filtered = validate_request("github", TOKEN, headers, BODY, ["release"])
    assert filtered.status == 400 and not filtered.act


def test_github_legacy_sha1_header():
    headers = {"X-Hub-Signature": sig("sha1"), "X-GitHub-Event": "push"}
    assert validate_request("github", TOKEN, headers, BODY).ok


def test_github_bad_signature_is_401():
    headers = {"X-Hub-Signature-256": sig("sha256", key="wrong"), "X-GitHub-Event": "push"}
    assert validate_request("github", TOKEN, headers, BODY).status == 401
    assert validate_request("github", TOKEN, {"X-GitHub-Event": "push"}, BODY).status == 401
    # sha256 header present but carrying sha1 is not accepted
    assert (
        validate_request(
            "github", TOKEN, {"X-Hub-Signature-256": sig("sha1"), "X-GitHub-Event": "push"}, BODY
        ).status
        == 401
    )


def test_github_ping_answered_without_action():
    body = b'{"zen": "Keep it logically awesome.", "hook_id": 1}'
    v = validate_request(
        "github",
        TOKEN,
        {"X-Hub-Signature-256": sig("sha256", body), "X-GitHub-Event": "ping"},
        body,
        ["push"],
    )
    assert v.ok and not v.act and v.message == "pong"


def test_github_form_encoded_payload():
    from urllib.parse import urlencode

    body = urlencode({"payload": BODY.decode()}).encode()
    headers = {
        "X-Hub-Signature-256": sig("sha256", body),
        "X-GitHub-Event": "push",
        "Content-Type": "application/x-www-form-urlencoded",
    }
    assert validate_request("github", TOKEN, headers, body).ok


def test_github_unparseable_payload():
    body = b"{not json"
    v = validate_request(
        "github", TOKEN, {"X-Hub-Signature-256": sig("sha256", body), "X-GitHub-Event": "push"}, body
    )
    assert v.status == 400


def test_gitlab_token_and_events():
    ok = validate_request(
        "gitlab", TOKEN, {"X-Gitlab-Token": TOKEN, "X-Gitlab-Event": "Push Hook"}, BODY, ["Push Hook"]
    )
    assert ok.ok and ok.act
    assert (
        validate_request(
            "gitlab", TOKEN, {"X-Gitlab-Token": "nope", "X-Gitlab-Event": "Push Hook"}, BODY
        ).status
        == 401
    )
    assert validate_request("gitlab", TOKEN, {"X-Gitlab-Event": "Push Hook"}, BODY).status == 401
    assert (
        validate_request(
            "gitlab", TOKEN, {"X-Gitlab-Token": TOKEN, "X-Gitlab-Event": "Tag Push Hook"}, BODY, ["Push Hook"]
        ).status
        == 400
    )


def test_bitbucket_server():
    headers = {"X-Hub-Signature": sig("sha256"), "X-Event-Key": "repo:refs_changed"}
    assert validate_request("bitbucket", TOKEN, headers, BODY, ["repo:refs_changed"]).ok
    assert (
        validate_request(
            "bitbucket", TOKEN, {**headers, "X-Hub-Signature": sig("sha256", key="x")}, BODY
        ).status
        == 401
    )
    ping = validate_request(
        "bitbucket", TOKEN, {"X-Hub-Signature": sig("sha256"), "X-Event-Key": "diagnostics:ping"}, BODY
    )
    assert ping.ok and not ping.act


def test_harbor_authorization():
    assert validate_request("harbor", TOKEN, {"Authorization": TOKEN}, BODY).ok
    assert validate_request("harbor", TOKEN, {"Authorization": "Bearer " + TOKEN}, BODY).status == 401
    assert validate_request("harbor", TOKEN, {}, BODY).status == 401


def test_nexus_hmac_sha1():
    signature = hmac.new(TOKEN.encode(), BODY, hashlib.sha1).hexdigest()
    assert validate_request("nexus", TOKEN, {"X-Nexus-Webhook-Signature": signature}, BODY).ok
    assert validate_request("nexus", TOKEN, {"X-Nexus-Webhook-Signature": "0" * 40}, BODY).status == 401
    assert validate_request("nexus", TOKEN, {}, BODY).status == 401


@pytest.mark.parametrize("kind", ["dockerhub", "quay", "acr"])
def test_registry_payloads_must_be_json(kind: str):
    assert validate_request(kind, TOKEN, {}, b'{"push_data": {"tag": "v1"}}').ok
    assert validate_request(kind, TOKEN, {}, b"nope").status == 400


def test_cdevents_type_filter():
    headers = {"Ce-Type": "dev.cdevents.change.merged.0.1.2"}
    assert validate_request("cdevents", TOKEN, headers, b"{}", ["dev.cdevents.change.merged.0.1.2"]).ok
    assert (
        validate_request("cdevents", TOKEN, headers, b"{}", ["dev.cdevents.build.started.0.1.1"]).status
        == 400
    )
    assert validate_request("cdevents", TOKEN, {}, b"{}").status == 400


def test_unknown_type():
    assert validate_request("smoke-signal", TOKEN, {}, b"").status == 400


def test_gcr_claims():
    aud, sa = "https://x/hook/a", "sa@p.iam.gserviceaccount.com"
    good = {"iss": "https://accounts.google.com", "aud": aud, "email": sa, "email_verified": "true"}
    assert validate_gcr_claims(good, aud, sa).ok
    assert validate_gcr_claims({**good, "iss": "evil"}, aud, sa).status == 401
    assert validate_gcr_claims({**good, "email_verified": False}, aud, sa).status == 401


GCR_AUD, GCR_SA = "https://x/hook/a", "sa@p.iam.gserviceaccount.com"


@pytest.mark.parametrize(
    ("token_claims", "audience", "email"),
    [
        ({"aud": "https://other/service"}, GCR_AUD, GCR_SA),  # a token minted for another service
        ({"email": "attacker@evil.iam.gserviceaccount.com"}, GCR_AUD, GCR_SA),  # any Google account
        ({}, "", GCR_SA),  # the Receiver does not say which audience
        ({}, GCR_AUD, ""),  # nor which account
    ],
)
def test_gcr_token_for_another_audience_or_account_is_refused(
    token_claims: dict[str, str], audience: str, email: str
) -> None:
    """Google signs ID tokens for any audience and any account: a valid token proves nothing
    unless both match what the Receiver's Secret names."""
    claims = {"iss": "https://accounts.google.com", "aud": GCR_AUD, "email": GCR_SA, "email_verified": "true"}
    assert validate_gcr_claims({**claims, **token_claims}, audience, email).status == 401


def test_constant_time_comparisons_are_used():
    import inspect

    from tide.controllers.notification import receivers

    source = inspect.getsource(receivers)
    assert "compare_digest" in source
    assert " != token" not in source and " == token" not in source


def test_resource_helpers():
    assert resource_api_version({"kind": "GitRepository"}) == "source.toolkit.fluxcd.io/v1"
    assert resource_api_version({"kind": "Kustomization"}) == "kustomize.toolkit.fluxcd.io/v1"
    assert resource_api_version({"kind": "X", "apiVersion": "g/v9"}) == "g/v9"
    with pytest.raises(ValueError):
        resource_api_version({"kind": "ConfigMap"})
    assert label_selector({"b": "2", "a": "1"}) == "a=1,b=2"
    assert requested_at_value().endswith(" +0000 UTC")


def test_resource_filter_cel():
    from tide.controllers.notification.receivers import ResourceFilter

    res = {"metadata": {"name": "podinfo", "labels": {"app": "web"}}}
    assert ResourceFilter("res.metadata.name == 'podinfo'").allows(res)
    assert not ResourceFilter("res.metadata.name == 'other'").allows(res)
    body = b'{"push_data": {"tag": "v1.2.3-rc1"}, "repository": {"name": "podinfo"}}'
    assert ResourceFilter(
        "req.push_data.tag.contains('-rc') && res.metadata.name == req.repository.name", body
    ).allows(res)
    assert not ResourceFilter("res.metadata.labels.missing == 'x'").allows(res)  # error -> no match
    with pytest.raises(ValueError):
        ResourceFilter("res.metadata.name ==")
