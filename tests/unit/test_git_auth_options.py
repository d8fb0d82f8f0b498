"""Secret keys to Git credentials, with Flux's key names and its bad-input messages."""

import pytest

from tide.controllers.source.git import GitAuth, InvalidAuth, is_http_refusal, redact


def test_basic_bearer_and_tls_keys():
    auth = GitAuth.from_secret({"username": b"u", "password": b"p", "ca.crt": b"CA"}, "https")
    assert (auth.username, auth.password, auth.ca_pem) == ("u", "p", b"CA")
    assert GitAuth.from_secret({"bearerToken": b"t"}, "https").bearer_token == "t"
    auth = GitAuth.from_secret({"caFile": b"CA2", "tls.crt": b"C", "tls.key": b"K"}, "https")
    assert (auth.ca_pem, auth.cert_pem, auth.key_pem) == (b"CA2", b"C", b"K")


def test_ssh_keys():
    auth = GitAuth.from_secret(
        {"identity": b"KEY", "known_hosts": b"host ssh-ed25519 AAA", "password": b"pw"}, "ssh"
    )
    assert (auth.identity, auth.known_hosts, auth.password) == (b"KEY", b"host ssh-ed25519 AAA", "pw")


@pytest.mark.parametrize(
    ("data", "scheme", "message"),
    [
        ({"identity": b"KEY"}, "ssh", "'known_hosts' is required"),
        ({"known_hosts": b"x"}, "ssh", "'identity' is required"),
        ({"username": b"u"}, "https", "'password' is required"),
        ({"username": b"u", "password": b"p", "bearerToken": b"t"}, "https", "mutually exclusive"),
        ({"tls.crt": b"C"}, "https", "must be given together"),
    ],
)
def test_bad_secrets(data, scheme, message):
    with pytest.raises(InvalidAuth, match=message):
        GitAuth.from_secret(data, scheme)


def test_redact_hides_credentials_and_queries():
    assert redact("https://user:pw@example.com:8443/repo.git") == "https://example.com:8443/repo.git"
    assert redact("https://example.com/repo.git?token=abc") == "https://example.com/repo.git"


@pytest.mark.parametrize(
    ("message", "refusal"),
    [
        ("unexpected http resp 403 for http://git.example/repo.git/info/refs", True),
        ("unexpected http resp 401 for http://git.example/repo.git/info/refs", True),
        ("unexpected http resp 500 for http://git.example/repo.git/info/refs", False),
        # a connection refused on a port that has "401" in it is an outage, not a refusal
        ("HTTPConnectionPool(host='127.0.0.1', port=40167): Max retries exceeded", False),
        ("unexpected http resp 404 for http://git.example/4031/repo.git", False),
    ],
)
def test_only_a_401_or_403_status_is_an_authentication_failure(message: str, refusal: bool) -> None:
    assert is_http_refusal(message) is refusal
