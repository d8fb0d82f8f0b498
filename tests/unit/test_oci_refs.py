"""OCIRepository's pure rules: reference precedence, semver over tags, revisions, layers, names,
credentials and the registry's WWW-Authenticate challenges."""

from __future__ import annotations

import base64
import json

import pytest

from tide.controllers.source import oci, oci_refs
from tide.shared.api.source import OCILayerSelector, OCIRepositoryRef

DIGEST = "sha256:" + "ab" * 32
FLUX_LAYER = "application/vnd.cncf.flux.content.v1.tar+gzip"


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        (None, oci_refs.Wanted("tag", "latest")),
        (OCIRepositoryRef(), oci_refs.Wanted("tag", "latest")),
        (OCIRepositoryRef(tag="v1"), oci_refs.Wanted("tag", "v1")),
        (OCIRepositoryRef(tag="v1", semver="^1", semver_filter="rc"), oci_refs.Wanted("semver", "^1", "rc")),
        (OCIRepositoryRef(tag="v1", semver="^1", digest=DIGEST), oci_refs.Wanted("digest", DIGEST)),
    ],
)
def test_precedence_digest_over_semver_over_tag(
    ref: OCIRepositoryRef | None, expected: oci_refs.Wanted
) -> None:
    assert oci_refs.wanted(ref) == expected


def test_digest_must_be_sha256() -> None:
    assert oci_refs.check_digest(DIGEST) == DIGEST
    with pytest.raises(oci_refs.InvalidReference, match="invalid digest"):
        oci_refs.check_digest("sha256:abc")


TAGS = ["latest", "1.0.0", "v1.2.0", "1.10.1-rc.1", "2.0.0", "not-a-version", "1.1"]


@pytest.mark.parametrize(
    ("constraint", "tag_filter", "expected"),
    [
        (">=1.0.0 <2.0.0", None, "v1.2.0"),
        ("*", None, "2.0.0"),
        ("~1.1", None, "1.1"),
        (">=1.0.0-0", ".*-rc.*", "1.10.1-rc.1"),
        (">=1.0.0", "^v", "v1.2.0"),
    ],
)
def test_highest_matching_tag(constraint: str, tag_filter: str | None, expected: str) -> None:
    assert oci_refs.highest_tag(TAGS, constraint, tag_filter) == expected


def test_semver_errors() -> None:
    with pytest.raises(oci_refs.InvalidReference, match="no match found for semver"):
        oci_refs.highest_tag(TAGS, ">=5.0.0")
    with pytest.raises(oci_refs.InvalidReference, match="parse error"):
        oci_refs.highest_tag(TAGS, ">=x.y.z!")
    with pytest.raises(oci_refs.InvalidReference, match="failed to compile regex"):
        oci_refs.highest_tag(TAGS, "*", "(")


def test_revision_format() -> None:
    assert oci_refs.revision("v1", DIGEST) == f"v1@{DIGEST}"
    assert oci_refs.revision(None, DIGEST) == DIGEST
    assert oci_refs.digest_of_revision(f"v1@{DIGEST}") == DIGEST
    assert oci_refs.digest_of_revision(DIGEST) == DIGEST


def manifest(*media_types: str) -> dict[str, object]:
    return {
        "layers": [{"mediaType": m, "digest": f"sha256:{i}", "size": 1} for i, m in enumerate(media_types)]
    }


def test_layer_selection() -> None:
    two = manifest("application/vnd.other", FLUX_LAYER)
    assert oci_refs.select_layer(two, None)["digest"] == "sha256:0"  # Flux: the first layer
    assert oci_refs.select_layer(two, OCILayerSelector(media_type=FLUX_LAYER))["digest"] == "sha256:1"
    with pytest.raises(oci_refs.LayerError, match="failed to find layer with media type 'x/y'"):
        oci_refs.select_layer(two, OCILayerSelector(media_type="x/y"))
    with pytest.raises(oci_refs.LayerError, match="no layers found in artifact"):
        oci_refs.select_layer({"layers": []}, None)
    assert oci_refs.layer_operation(None) == "extract"
    assert oci_refs.layer_operation(OCILayerSelector(operation="copy")) == "copy"
    assert oci_refs.same_layer_selector(None, None)
    assert not oci_refs.same_layer_selector(OCILayerSelector(media_type=FLUX_LAYER), None)
    assert oci_refs.same_layer_selector(
        OCILayerSelector(operation="copy"), OCILayerSelector(operation="copy")
    )


@pytest.mark.parametrize(
    ("url", "registry", "path", "schemes"),
    [
        (
            "oci://ghcr.io/stefanprodan/manifests/podinfo",
            "ghcr.io",
            "stefanprodan/manifests/podinfo",
            ("https",),
        ),
        ("oci://127.0.0.1:5000/app", "127.0.0.1:5000", "app", ("https", "http")),
        ("oci://localhost:5000/org/app", "localhost:5000", "org/app", ("https", "http")),
        ("oci://docker.io/library/nginx", "index.docker.io", "library/nginx", ("https",)),
        ("oci://nginx", "index.docker.io", "library/nginx", ("https",)),
        ("oci://10.1.2.3/app", "10.1.2.3", "app", ("https", "http")),
    ],
)
def test_parse_url(url: str, registry: str, path: str, schemes: tuple[str, ...]) -> None:
    repo = oci.parse_url(url)
    assert (repo.registry, repo.path, repo.schemes()) == (registry, path, schemes)


def test_parse_url_rejects_tags_digests_and_other_schemes() -> None:
    with pytest.raises(oci.InvalidURL, match="URL must not contain a tag; remove ':v1'"):
        oci.parse_url("oci://ghcr.io/org/app:v1")
    with pytest.raises(oci.InvalidURL, match="digest"):
        oci.parse_url(f"oci://ghcr.io/org/app@{DIGEST}")
    with pytest.raises(oci.InvalidURL, match="oci://"):
        oci.parse_url("https://ghcr.io/org/app")
    assert oci.parse_url("oci://ghcr.io/org/app", insecure=True).schemes() == ("https", "http")


@pytest.mark.parametrize(
    ("header", "scheme", "params"),
    [
        (
            'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
            'scope="repository:library/alpine:pull,push"',
            "bearer",
            {
                "realm": "https://auth.docker.io/token",
                "service": "registry.docker.io",
                "scope": "repository:library/alpine:pull,push",
            },
        ),
        ('Basic realm="tide-registry"', "basic", {"realm": "tide-registry"}),
        (
            'bearer realm="https://r/t", error="invalid_token"',
            "bearer",
            {"realm": "https://r/t", "error": "invalid_token"},
        ),
        ('Bearer realm="a \\"quoted\\" realm"', "bearer", {"realm": 'a "quoted" realm'}),
        ("Basic", "basic", {}),
    ],
)
def test_parse_challenge(header: str, scheme: str, params: dict[str, str]) -> None:
    assert oci.parse_challenge(header) == oci.Challenge(scheme, params)


def test_parse_challenge_empty_and_token_url() -> None:
    assert oci.parse_challenge("") is None
    challenge = oci.Challenge("bearer", {"realm": "https://auth.example/token", "service": "reg"})
    assert (
        oci.token_url(challenge, "org/app")
        == "https://auth.example/token?service=reg&scope=repository%3Aorg%2Fapp%3Apull"
    )
    no_service = oci.Challenge("bearer", {"realm": "https://auth.example/token?x=1"})
    assert oci.token_url(no_service, "a") == "https://auth.example/token?x=1&scope=repository%3Aa%3Apull"


def test_credentials_from_docker_config() -> None:
    auth = base64.b64encode(b"bob:pa:ss").decode()
    config = {
        "auths": {
            "https://index.docker.io/v1/": {"username": "hub", "password": "h"},
            "127.0.0.1:5000": {"auth": auth},
            "*.example.com": {"username": "wild", "password": "w"},
            "token.example": {"identitytoken": "refresh", "registrytoken": "bearer"},
        }
    }
    auths = oci.docker_config_auths({".dockerconfigjson": json.dumps(config).encode()})
    assert oci.credentials_for("127.0.0.1:5000", auths) == oci.Credentials("bob", "pa:ss")
    assert oci.credentials_for("index.docker.io", auths) == oci.Credentials("hub", "h")
    assert oci.credentials_for("reg.example.com", auths) == oci.Credentials("wild", "w")
    assert oci.credentials_for("token.example", auths) == oci.Credentials("", "", "refresh", "bearer")
    assert oci.credentials_for("ghcr.io", auths) is None
    legacy = oci.docker_config_auths({".dockercfg": json.dumps({"ghcr.io": {"auth": auth}}).encode()})
    assert oci.credentials_for("ghcr.io", legacy) == oci.Credentials("bob", "pa:ss")
    with pytest.raises(oci.InvalidCredentials, match="neither"):
        oci.docker_config_auths({"username": b"x"})


def test_registry_error_messages_like_go_containerregistry() -> None:
    body = json.dumps(
        {"errors": [{"code": "MANIFEST_UNKNOWN", "message": "manifest unknown", "detail": {"Tag": "nope"}}]}
    ).encode()
    assert (
        oci._status_error("GET", "http://r/v2/a/manifests/nope", 404, "Not Found", body)
        == "GET http://r/v2/a/manifests/nope: MANIFEST_UNKNOWN: manifest unknown; map[Tag:nope]"
    )
    assert oci._status_error("HEAD", "http://r/x", 500, "Internal Server Error", b"") == (
        "HEAD http://r/x: unexpected status code 500 Internal Server Error"
    )


@pytest.mark.parametrize(
    ("realm", "registry", "insecure", "error"),
    [
        ("https://auth.docker.io/token", "registry-1.docker.io", False, None),
        ("http://localhost:5001/token", "127.0.0.1:5000", True, None),
        ("http://127.0.0.1:5000/token", "127.0.0.1:5000", True, None),  # the registry itself
        ("http://auth.example/token", "reg.example", False, 'realm scheme "http" not allowed'),
        ("ftp://auth.example/token", "reg.example", True, 'realm scheme "ftp" not allowed'),
        ("https://169.254.169.254/latest", "reg.example", False, "private or link-local"),
        ("https://10.0.0.1/token", "reg.example", False, "private or link-local"),
        ("http://127.0.0.1:5001/token", "127.0.0.1:5000", True, "private or link-local"),
    ],
)
def test_realm_guard(realm: str, registry: str, insecure: bool, error: str | None) -> None:
    if error is None:
        oci.check_realm(realm, registry, insecure)
    else:
        with pytest.raises(oci.AuthenticationError, match=error):
            oci.check_realm(realm, registry, insecure)
