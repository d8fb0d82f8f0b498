"""Reading kubeconfigs: contexts, embedded and file certificates, tokens, exec plugins; the TLS
read buffers of a controller's connections."""

import asyncio
import asyncio.sslproto
import base64
import ssl
from pathlib import Path

import pytest

from tide.shared.kube.config import (
    TLS_READ_BUFFER,
    KubeconfigError,
    connection_from_kubeconfig,
    use_small_tls_read_buffers,
)

PEM = base64.b64encode(b"-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n").decode()


def config(user: dict, cluster: dict | None = None, current: str = "main") -> dict:
    return {
        "current-context": current,
        "contexts": [
            {"name": "main", "context": {"cluster": "c", "user": "u"}},
            {"name": "other", "context": {"cluster": "c2", "user": "u"}},
        ],
        "clusters": [
            {"name": "c", "cluster": cluster or {"server": "https://127.0.0.1:6443"}},
            {"name": "c2", "cluster": {"server": "https://10.0.0.1:443", "insecure-skip-tls-verify": True}},
        ],
        "users": [{"name": "u", "user": user}],
    }


def test_embedded_certificates_are_written_to_private_files(tmp_path: Path) -> None:
    conn = connection_from_kubeconfig(
        config(
            {"client-certificate-data": PEM, "client-key-data": PEM},
            {"server": "https://127.0.0.1:6443", "certificate-authority-data": PEM},
        ),
        tmp_path,
    )
    assert conn.host == "https://127.0.0.1:6443"
    for path in (conn.ca_file, conn.cert_file, conn.key_file):
        assert path is not None
        assert Path(path).read_bytes().startswith(b"-----BEGIN CERTIFICATE-----")
        assert Path(path).stat().st_mode & 0o077 == 0


def test_relative_paths_are_relative_to_the_kubeconfig(tmp_path: Path) -> None:
    conn = connection_from_kubeconfig(
        config(
            {"client-certificate": "pki/admin.crt", "client-key": "/abs/admin.key"},
            {"server": "https://x", "certificate-authority": "pki/ca.crt"},
        ),
        tmp_path,
    )
    assert conn.ca_file == str(tmp_path / "pki/ca.crt")
    assert conn.cert_file == str(tmp_path / "pki/admin.crt")
    assert conn.key_file == "/abs/admin.key"


async def test_token_and_basic_auth_headers(tmp_path: Path) -> None:
    conn = connection_from_kubeconfig(config({"token": "abc"}), tmp_path)
    assert await conn.auth_headers() == {"Authorization": "Bearer abc"}
    conn = connection_from_kubeconfig(config({"username": "a", "password": "b"}), tmp_path)
    assert await conn.auth_headers() == {"Authorization": "Basic " + base64.b64encode(b"a:b").decode()}
    token_file = tmp_path / "token"
    token_file.write_text("from-file\n")
    conn = connection_from_kubeconfig(config({"tokenFile": str(token_file)}), tmp_path)
    assert await conn.auth_headers() == {"Authorization": "Bearer from-file"}


async def test_exec_plugin_token(tmp_path: Path) -> None:
    script = tmp_path / "cred.sh"
    script.write_text(
        '#!/bin/sh\necho \'{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential",'
        '"status":{"token":"exec-\'"$SUFFIX"\'"}}\'\n'
    )
    script.chmod(0o755)
    conn = connection_from_kubeconfig(
        config({"exec": {"command": str(script), "env": [{"name": "SUFFIX", "value": "t"}]}}), tmp_path
    )
    assert await conn.auth_headers() == {"Authorization": "Bearer exec-t"}


def test_context_selection(tmp_path: Path) -> None:
    conn = connection_from_kubeconfig(config({"token": "t"}), tmp_path, context="other")
    assert conn.host == "https://10.0.0.1:443" and conn.insecure
    with pytest.raises(KubeconfigError):
        connection_from_kubeconfig(config({"token": "t"}), tmp_path, context="missing")


def test_auth_provider_needs_the_legacy_loader(tmp_path: Path) -> None:
    with pytest.raises(KubeconfigError):
        connection_from_kubeconfig(config({"auth-provider": {"name": "oidc"}}), tmp_path)


async def test_tls_connections_get_small_read_buffers():
    """A controller holds a TLS connection per watch and per request in flight: each gets a read
    buffer of TLS_READ_BUFFER bytes, not asyncio's 256 KiB."""
    use_small_tls_read_buffers()
    loop = asyncio.get_running_loop()
    protocol = asyncio.sslproto.SSLProtocol(
        loop, asyncio.Protocol(), ssl.create_default_context(), loop.create_future(), server_hostname="x"
    )
    assert len(protocol._ssl_buffer) == TLS_READ_BUFFER
