"""Where the controllers find the API server: --kubeconfig, then KUBECONFIG, then in-cluster, then
~/.kube/config (the same order as controller-runtime).

Kubeconfigs with certificates, tokens, token files, basic auth or exec credential plugins are read
here directly; anything else (legacy auth-provider plugins) goes through kubernetes_asyncio's loader,
imported only then because its client package alone costs ~45 MiB and a second of start-up.
"""

from __future__ import annotations

import asyncio
import asyncio.sslproto
import base64
import contextlib
import json
import os
import ssl
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

IN_CLUSTER_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
IN_CLUSTER_TOKEN = IN_CLUSTER_DIR / "token"
IN_CLUSTER_CA = IN_CLUSTER_DIR / "ca.crt"
IN_CLUSTER_NAMESPACE = IN_CLUSTER_DIR / "namespace"
TOKEN_FILE_REFRESH = 60.0


class KubeconfigError(RuntimeError):
    pass


@dataclass
class Connection:
    """The API server's address plus how to authenticate to it."""

    server: str
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    insecure: bool = False
    tls_server_name: str | None = None
    token: str | None = None
    token_file: str | None = None
    username: str | None = None
    password: str | None = None
    exec_config: dict[str, Any] | None = None
    owned_files: list[str] = field(default_factory=list, repr=False)
    """Certificate and key files written from kubeconfig data for this connection alone."""
    _token_read_at: float = 0.0
    _exec_expiry: float = 0.0
    _exec_lock: asyncio.Lock | None = field(default=None, repr=False)

    @property
    def host(self) -> str:
        return self.server.rstrip("/")

    def remove_files(self) -> None:
        """Delete the files written for this connection (it is not used any more)."""
        for path in self.owned_files:
            with contextlib.suppress(OSError):
                os.unlink(path)
        self.owned_files.clear()

    def ssl_context(self) -> ssl.SSLContext | bool:
        if not self.host.startswith("https"):
            return False
        context = ssl.create_default_context(cafile=self.ca_file)
        if self.cert_file:
            context.load_cert_chain(self.cert_file, keyfile=self.key_file)
        if self.insecure:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    async def auth_headers(self) -> dict[str, str]:
        if self.exec_config is not None:
            await self._refresh_exec()
        if self.token_file and time.monotonic() - self._token_read_at > TOKEN_FILE_REFRESH:
            # Projected service account tokens rotate: re-read the file now and then.
            self.token = read_token(self.token_file)
            self._token_read_at = time.monotonic()
        if self.token:
            return {"Authorization": f"Bearer {self.token}"}
        if self.username is not None and self.password is not None:
            basic = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
            return {"Authorization": f"Basic {basic}"}
        return {}

    async def _refresh_exec(self) -> None:
        if self._exec_lock is None:
            self._exec_lock = asyncio.Lock()
        async with self._exec_lock:
            if self.token and time.time() < self._exec_expiry - 10:
                return
            credential = await run_exec_plugin(self.exec_config or {})
            status = credential.get("status") or {}
            self.token = status.get("token") or self.token
            expiry = status.get("expirationTimestamp")
            self._exec_expiry = (
                datetime.fromisoformat(str(expiry).replace("Z", "+00:00")).timestamp()
                if expiry
                else float("inf")
            )


class LegacyConnection(Connection):
    """kubernetes_asyncio's Configuration behind the same interface (auth-provider plugins)."""

    def __init__(self, configuration: Any) -> None:
        super().__init__(
            server=str(configuration.host),
            ca_file=configuration.ssl_ca_cert,
            cert_file=configuration.cert_file,
            key_file=configuration.key_file,
            insecure=not configuration.verify_ssl,
            tls_server_name=getattr(configuration, "tls_server_name", None),
        )
        self.configuration = configuration

    async def auth_headers(self) -> dict[str, str]:
        token = await self.configuration.get_api_key_with_prefix("BearerToken")
        return {"Authorization": str(token)} if token else {}


async def run_exec_plugin(config: dict[str, Any]) -> dict[str, Any]:
    """Run a client-go exec credential plugin and return its ExecCredential."""
    env = dict(os.environ)
    for item in config.get("env") or []:
        env[str(item["name"])] = str(item["value"])
    env["KUBERNETES_EXEC_INFO"] = json.dumps(
        {
            "apiVersion": config.get("apiVersion", "client.authentication.k8s.io/v1"),
            "kind": "ExecCredential",
            "spec": {"interactive": False},
        }
    )
    proc = await asyncio.create_subprocess_exec(
        str(config["command"]),
        *[str(a) for a in config.get("args") or []],
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 60)
    except TimeoutError:
        proc.kill()
        raise KubeconfigError(f"exec plugin {config['command']} timed out") from None
    if proc.returncode != 0:
        raise KubeconfigError(f"exec plugin {config['command']} failed: {err.decode()[-500:]}")
    credential: dict[str, Any] = json.loads(out)
    return credential


_materialized: list[str] = []


def _data_file(data: str, suffix: str, owned: list[str] | None = None) -> str:
    """Write base64 kubeconfig data (certificates, keys) to a private file for the SSL context."""
    handle, path = tempfile.mkstemp(prefix="tide-kube-", suffix=suffix)
    with os.fdopen(handle, "wb") as out:
        out.write(base64.b64decode(data))
    (owned if owned is not None else _materialized).append(path)
    return path


def _relative(base: Path, path: str | None) -> str | None:
    if not path:
        return None
    candidate = Path(path).expanduser()
    return str(candidate if candidate.is_absolute() else base / candidate)


def _named(items: list[dict[str, Any]] | None, name: str | None, what: str) -> dict[str, Any]:
    for item in items or []:
        if item.get("name") == name:
            return dict(item.get(what) or {})
    raise KubeconfigError(f"kubeconfig has no {what} named {name!r}")


def kubeconfig_parts(
    document: dict[str, Any], context: str | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The cluster and user entries of a kubeconfig's (current) context."""
    if not isinstance(document, dict):
        raise KubeconfigError("kubeconfig is not a YAML mapping")
    context_name = context or document.get("current-context")
    ctx = _named(document.get("contexts"), context_name, "context")
    cluster = _named(document.get("clusters"), ctx.get("cluster"), "cluster")
    user = _named(document.get("users"), ctx.get("user"), "user") if ctx.get("user") else {}
    return cluster, user


def connection_from_kubeconfig(
    document: dict[str, Any], base: Path, context: str | None = None, own_files: bool = False
) -> Connection:
    """The Connection a kubeconfig describes, or KubeconfigError for what this loader does not read.
    own_files: the files written from certificate data belong to the connection (remove_files)."""
    cluster, user = kubeconfig_parts(document, context)
    if user.get("auth-provider"):
        raise KubeconfigError("auth-provider kubeconfigs need the legacy loader")
    if not cluster.get("server"):
        raise KubeconfigError("kubeconfig cluster has no server")
    connection = Connection(server=str(cluster["server"]))
    owned = connection.owned_files if own_files else None
    if cluster.get("certificate-authority-data"):
        connection.ca_file = _data_file(cluster["certificate-authority-data"], ".crt", owned)
    else:
        connection.ca_file = _relative(base, cluster.get("certificate-authority"))
    connection.insecure = bool(cluster.get("insecure-skip-tls-verify"))
    connection.tls_server_name = cluster.get("tls-server-name")
    if user.get("client-certificate-data"):
        connection.cert_file = _data_file(user["client-certificate-data"], ".crt", owned)
    else:
        connection.cert_file = _relative(base, user.get("client-certificate"))
    if user.get("client-key-data"):
        connection.key_file = _data_file(user["client-key-data"], ".key", owned)
    else:
        connection.key_file = _relative(base, user.get("client-key"))
    connection.token = user.get("token")
    connection.token_file = _relative(base, user.get("tokenFile"))
    connection.username = user.get("username")
    connection.password = user.get("password")
    connection.exec_config = user.get("exec")
    return connection


def in_cluster() -> bool:
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST")) and IN_CLUSTER_TOKEN.exists()


def in_cluster_connection() -> Connection:
    host = os.environ["KUBERNETES_SERVICE_HOST"]
    port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
    if ":" in host:
        host = f"[{host}]"
    return Connection(
        server=f"https://{host}:{port}", ca_file=str(IN_CLUSTER_CA), token_file=str(IN_CLUSTER_TOKEN)
    )


def pod_namespace() -> str | None:
    """The namespace this process runs in when it runs in a Pod."""
    try:
        return IN_CLUSTER_NAMESPACE.read_text().strip() or None
    except OSError:
        return None


def read_token(path: str) -> str:
    return Path(path).read_text().strip()


def read_kubeconfig(path: str, context: str | None = None) -> Connection:
    file = Path(path).expanduser()
    if not file.exists():
        raise KubeconfigError(f"kubeconfig {path} does not exist")
    document = yaml.safe_load(file.read_text()) or {}
    return connection_from_kubeconfig(document, file.parent, context)


async def _legacy(path: str | None, context: str | None) -> Connection:
    from kubernetes_asyncio import config as kube_config
    from kubernetes_asyncio.client import Configuration

    configuration = Configuration()
    await kube_config.load_kube_config(config_file=path, context=context, client_configuration=configuration)
    return LegacyConnection(configuration)


async def load_connection(kubeconfig: str | None = None, context: str | None = None) -> Connection:
    path = kubeconfig or os.environ.get("KUBECONFIG")
    if not path:
        if in_cluster():
            return in_cluster_connection()
        default = Path.home() / ".kube" / "config"
        if not default.exists():
            raise KubeconfigError("no kubeconfig: set --kubeconfig or KUBECONFIG, or run in a Pod")
        path = str(default)
    if os.pathsep not in path:
        try:
            return read_kubeconfig(path, context)
        except KubeconfigError:
            pass
    return await _legacy(path, context)


TLS_READ_BUFFER = 32 * 1024
"""Bytes asyncio reads from a TLS connection at once: two TLS records (16 KiB each at most)."""


def use_small_tls_read_buffers() -> None:
    """Give every TLS connection of this process a read buffer of TLS_READ_BUFFER bytes.

    asyncio allocates and zeroes its default, 256 KiB, for each connection, and a controller holds
    a connection per watch and per request in flight (HTTP/1.1; Flux's Go client multiplexes them
    over one with HTTP/2): the helm controller held about 70 at Flux's defaults with 100 releases,
    17 MiB of buffers. A read returns what the TLS records at hand hold, whatever the buffer's size."""
    asyncio.sslproto.SSLProtocol.max_size = TLS_READ_BUFFER
