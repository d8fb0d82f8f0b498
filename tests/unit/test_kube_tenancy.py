"""Acting for tenants: impersonating clients, kubeconfig Secrets read as hostile input, and which
client acts for an object (TargetClients)."""

import base64
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web

from tide.shared.kube.client import KubeClient
from tide.shared.kube.config import Connection
from tide.shared.kube.kubeconfig_secret import (
    KubeconfigExecRefused,
    KubeconfigFileRefused,
    KubeconfigInvalid,
    KubeconfigKeyMissing,
    KubeconfigPolicy,
    connection_from_secret,
)
from tide.shared.kube.targets import KubeconfigSecretNotFound, TargetClients

PEM = base64.b64encode(b"-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n").decode()


def kubeconfig(user: dict[str, Any], cluster: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "remote",
        "contexts": [{"name": "remote", "context": {"cluster": "c", "user": "u"}}],
        "clusters": [{"name": "c", "cluster": cluster or {"server": "https://10.1.2.3:6443"}}],
        "users": [{"name": "u", "user": user}],
    }


def secret(document: Any, key: str = "value", version: str = "1") -> dict[str, Any]:
    raw = document if isinstance(document, str) else yaml.safe_dump(document)
    return {
        "metadata": {"name": "remote-kubeconfig", "namespace": "tenant-a", "resourceVersion": version},
        "data": {key: base64.b64encode(raw.encode()).decode()},
    }


# --- kubeconfig Secrets --------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["value", "value.yaml"])
def test_kubeconfig_is_read_from_flux_keys(key: str) -> None:
    conn = connection_from_secret(secret(kubeconfig({"token": "t"}), key), KubeconfigPolicy())
    assert conn.host == "https://10.1.2.3:6443"
    assert conn.token == "t"


def test_a_named_key_is_the_only_key_read() -> None:
    with pytest.raises(KubeconfigKeyMissing, match="'config'"):
        connection_from_secret(secret(kubeconfig({"token": "t"})), KubeconfigPolicy(), key="config")


def test_embedded_certificates_belong_to_the_connection() -> None:
    conn = connection_from_secret(
        secret(
            kubeconfig(
                {"client-certificate-data": PEM, "client-key-data": PEM},
                {"server": "https://10.1.2.3:6443", "certificate-authority-data": PEM},
            )
        ),
        KubeconfigPolicy(),
    )
    files = list(conn.owned_files)
    assert len(files) == 3 and all(Path(f).exists() for f in files)
    conn.remove_files()
    assert not any(Path(f).exists() for f in files)


EXEC = {"exec": {"apiVersion": "client.authentication.k8s.io/v1", "command": "/bin/sh", "args": ["-c", "id"]}}


@pytest.mark.parametrize(
    ("user", "cluster", "error"),
    [
        (EXEC, None, KubeconfigExecRefused),
        ({"auth-provider": {"name": "oidc"}}, None, KubeconfigExecRefused),
        ({"tokenFile": "/var/run/secrets/kubernetes.io/serviceaccount/token"}, None, KubeconfigFileRefused),
        ({"client-certificate": "/etc/x.crt", "client-key": "/etc/x.key"}, None, KubeconfigFileRefused),
        (
            {"token": "t"},
            {"server": "https://h", "certificate-authority": "/etc/ca.crt"},
            KubeconfigFileRefused,
        ),
        ({"token": "t"}, {"server": "https://h", "insecure-skip-tls-verify": True}, KubeconfigFileRefused),
        ({"token": "t", "as": "system:admin"}, None, KubeconfigInvalid),
    ],
)
def test_hostile_kubeconfigs_are_refused(
    user: dict[str, Any], cluster: dict[str, Any] | None, error: type[Exception]
) -> None:
    with pytest.raises(error, match=r"refused|not supported"):
        connection_from_secret(secret(kubeconfig(user, cluster)), KubeconfigPolicy())


def test_the_insecure_flags_allow_what_they_name() -> None:
    allowed = KubeconfigPolicy(allow_exec=True, allow_insecure_tls=True)
    conn = connection_from_secret(secret(kubeconfig(EXEC)), allowed)
    assert conn.exec_config is not None
    conn = connection_from_secret(secret(kubeconfig({"tokenFile": "/tmp/token"})), allowed)
    assert conn.token_file == "/tmp/token"
    with pytest.raises(KubeconfigExecRefused):  # one flag does not open the other's door
        connection_from_secret(secret(kubeconfig(EXEC)), KubeconfigPolicy(allow_insecure_tls=True))


@pytest.mark.parametrize("raw", ["{not yaml", "[]", yaml.safe_dump({"clusters": []})])
def test_malformed_kubeconfigs_are_invalid(raw: str) -> None:
    with pytest.raises(KubeconfigInvalid):
        connection_from_secret(secret(raw), KubeconfigPolicy())


# --- impersonation on the wire -------------------------------------------------------------------


@pytest.fixture
async def api_server(aiohttp_unused_port: Any = None) -> Any:
    seen: list[dict[str, Any]] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append({"path": request.path, "headers": request.headers.getall("Impersonate-User", [])})
        if request.path == "/api/v1":
            body = {"resources": [{"name": "configmaps", "kind": "ConfigMap", "namespaced": True}]}
        else:
            body = {"kind": "ConfigMap", "metadata": {"name": "x"}}
        return web.Response(text=json.dumps(body), content_type="application/json")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    client = KubeClient(Connection(server=f"http://127.0.0.1:{port}", token="controller"))
    yield client, seen
    await client.close()
    await runner.cleanup()


async def test_an_impersonating_client_sends_the_service_account_user(api_server: Any) -> None:
    controller, seen = api_server
    tenant = controller.as_service_account("tenant-a", "reconciler")
    assert controller.as_service_account("tenant-a", "reconciler") is tenant
    await tenant.get("v1", "ConfigMap", "x", "tenant-a")
    await controller.get("v1", "ConfigMap", "x", "tenant-a")
    # Discovery is shared: one discovery request for both identities.
    assert [s["path"] for s in seen] == [
        "/api/v1",
        "/api/v1/namespaces/tenant-a/configmaps/x",
        "/api/v1/namespaces/tenant-a/configmaps/x",
    ]
    assert seen[1]["headers"] == ["system:serviceaccount:tenant-a:reconciler"]
    assert seen[2]["headers"] == []
    assert tenant._http() is controller._http()  # one connection pool
    assert tenant.informer("v1", "ConfigMap") is not controller.informer("v1", "ConfigMap")


# --- which client acts ------------------------------------------------------------------------------


async def test_targets_default_service_account_and_remote_versions() -> None:
    kube = KubeClient(Connection(server="https://127.0.0.1:1"))
    targets = TargetClients(kube, default_service_account="default")
    own = await targets.target("tenant-a", "reconciler")
    assert own.service_account == "system:serviceaccount:tenant-a:reconciler"
    assert (
        await targets.target("tenant-b", None)
    ).service_account == "system:serviceaccount:tenant-b:default"
    assert (await TargetClients(kube).target("tenant-b", None)).client is kube

    secrets = {"remote-kubeconfig": secret(kubeconfig({"token": "t"}))}

    async def get_secret(namespace: str, name: str) -> dict[str, Any] | None:
        return secrets.get(name)

    first = await targets.target("tenant-a", "", ("remote-kubeconfig", None), get_secret)
    again = await targets.target("tenant-a", "", ("remote-kubeconfig", None), get_secret)
    assert first.remote == "https://10.1.2.3:6443" and first.client is again.client
    assert first.service_account == "system:serviceaccount:tenant-a:default"
    secrets["remote-kubeconfig"] = secret(
        kubeconfig({"token": "t2"}, {"server": "https://10.9.9.9"}), version="2"
    )
    changed = await targets.target("tenant-a", "", ("remote-kubeconfig", None), get_secret)
    assert changed.remote == "https://10.9.9.9" and changed.slot == first.slot
    with pytest.raises(KubeconfigSecretNotFound):
        await targets.target("tenant-a", "", ("gone", None), get_secret)
    await targets.close()
    await kube.close()
