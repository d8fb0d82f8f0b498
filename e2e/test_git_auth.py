"""GitRepository credentials against real servers: basic, bearer + CA, client certs, SSH."""

from __future__ import annotations

import pytest

from e2e.fixtures.source import apply, condition, gitrepository, secret, wait_failing, wait_ready

pytestmark = pytest.mark.e2e


def test_every_auth_method(git_server, source_controller, kubectl, namespace):
    repo = git_server.create_repo(f"auth-{namespace}", {"app.yaml": "a: 1\n"})
    head = repo.head()
    pki = git_server.pki
    source_controller()
    apply(
        kubectl,
        namespace,
        secret("bearer", {"bearerToken": git_server.token, "ca.crt": pki.ca_pem}),
        secret("mtls", {"ca.crt": pki.ca_pem, "tls.crt": pki.client_cert_pem, "tls.key": pki.client_key_pem}),
        secret("ssh", {"identity": git_server.ssh_identity, "known_hosts": git_server.known_hosts}),
        secret(
            "ssh-pass",
            {
                "identity": git_server.ssh_identity_encrypted,
                "password": git_server.ssh_identity_password,
                "known_hosts": git_server.known_hosts,
            },
        ),
        gitrepository("bearer", repo.https_url, secret="bearer"),
        gitrepository("mtls", repo.mtls_url, secret="mtls"),
        gitrepository("ssh", repo.ssh_url, secret="ssh"),
        gitrepository("ssh-pass", repo.ssh_url, secret="ssh-pass"),
    )
    for name in ("bearer", "mtls", "ssh", "ssh-pass"):
        wait_ready(kubectl, namespace, name, f"main@sha1:{head}")


def test_bad_credentials_and_hosts(git_server, source_controller, kubectl, namespace):
    repo = git_server.create_repo(f"badauth-{namespace}")
    other_host_key = (
        b"[127.0.0.1]:%d ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\n"
        % (git_server.ssh_port)
    )
    source_controller()
    apply(
        kubectl,
        namespace,
        secret("wrong", {"username": git_server.user, "password": "wrong"}),
        secret("unknown-host", {"identity": git_server.ssh_identity, "known_hosts": other_host_key}),
        secret("no-ca", {"bearerToken": git_server.token}),
        gitrepository("wrong-password", repo.http_url, secret="wrong"),
        gitrepository("unknown-host-key", repo.ssh_url, secret="unknown-host"),
        gitrepository("untrusted-ca", repo.https_url, secret="no-ca"),
        gitrepository("secret-missing", repo.http_url, secret="does-not-exist"),
        gitrepository("unreachable", "http://127.0.0.1:1/nothing.git", timeout="5s"),
    )
    obj = wait_failing(kubectl, namespace, "wrong-password", contains="authentication required")
    assert condition(obj, "Ready")["reason"] == "AuthenticationFailed"
    assert condition(obj, "FetchFailed")["status"] == "True"
    obj = wait_failing(kubectl, namespace, "unknown-host-key", contains="Host key verification failed")
    assert condition(obj, "Ready")["reason"] == "AuthenticationFailed"
    wait_failing(kubectl, namespace, "untrusted-ca", contains="CERTIFICATE_VERIFY_FAILED")
    obj = wait_failing(
        kubectl, namespace, "secret-missing", contains=f"failed to get secret '{namespace}/does-not-exist'"
    )
    assert condition(obj, "Ready")["reason"] == "AuthenticationFailed"
    obj = wait_failing(kubectl, namespace, "unreachable", contains="Connection refused")
    assert condition(obj, "Reconciling")["reason"] == "ProgressingWithRetry"
    assert "artifact" not in obj["status"]


def test_proxy_secret(git_server, source_controller, kubectl, namespace):
    repo = git_server.create_repo(f"proxy-{namespace}")
    source_controller()
    proxy = f"http://127.0.0.1:{git_server.proxy_port}"
    apply(
        kubectl,
        namespace,
        secret("proxy", {"address": proxy, "username": "proxy-user", "password": "proxy-pass"}),
        secret("bad-proxy", {"address": proxy, "username": "proxy-user", "password": "wrong"}),
        gitrepository("via-proxy", repo.public_http_url, proxySecretRef={"name": "proxy"}),
        gitrepository("bad-proxy", repo.public_http_url, proxySecretRef={"name": "bad-proxy"}),
    )
    before = git_server.request_stats().get("proxied", 0)
    wait_ready(kubectl, namespace, "via-proxy", f"main@sha1:{repo.head()}")
    assert git_server.request_stats().get("proxied", 0) > before
    obj = wait_failing(kubectl, namespace, "bad-proxy", contains="proxy authentication required")
    assert condition(obj, "Ready")["reason"] == "AuthenticationFailed"
