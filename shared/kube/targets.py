"""Which client acts for an object that applies to a cluster (Kustomization, HelmRelease): the
controller's own, a ServiceAccount it impersonates (`spec.serviceAccountName`, else
--default-service-account), on this cluster or on a remote one (`spec.kubeConfig.secretRef`), as Flux
does: with a kubeConfig the ServiceAccount is impersonated on the remote cluster.

Remote clients are cached by the kubeconfig Secret's resourceVersion: a changed Secret gives a new
client and closes the old one (its watch caches, its connections, its certificate files).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from tide.shared.kube.client import KubeClient, service_account_user
from tide.shared.kube.kubeconfig_secret import (
    KubeconfigPolicy,
    KubeconfigSecretError,
    connection_from_secret,
)

GetSecret = Callable[[str, str], Awaitable[dict[str, Any] | None]]


class KubeconfigSecretNotFound(KubeconfigSecretError):
    pass


@dataclass(frozen=True)
class Target:
    client: KubeClient
    slot: str
    """Stable across kubeconfig Secret versions: what a per-target cache is keyed by."""
    service_account: str | None = None
    """`system:serviceaccount:<ns>:<name>` when impersonating."""
    remote: str | None = None
    """The remote API server's address, None for this cluster."""

    def describe(self) -> str:
        who = f"as {self.service_account}" if self.service_account else "as the controller"
        where = f" on the cluster at {self.remote}" if self.remote else ""
        return who + where


@dataclass
class _Remote:
    version: str
    client: KubeClient


class TargetClients:
    """One per controller: the clients for every target, built on demand and cached."""

    def __init__(
        self,
        kube: KubeClient,
        policy: KubeconfigPolicy | None = None,
        default_service_account: str = "",
        qps: float = 50.0,
        burst: int = 300,
    ) -> None:
        self.kube = kube
        self.policy = policy or KubeconfigPolicy()
        self.default_service_account = default_service_account
        self._qps, self._burst = qps, burst
        self._remotes: dict[tuple[str, str, str], _Remote] = {}
        self._lock = asyncio.Lock()

    def service_account_name(self, service_account_name: str | None) -> str:
        """The ServiceAccount an object acts as: its own, else --default-service-account, else none."""
        return service_account_name or self.default_service_account

    async def target(
        self,
        namespace: str,
        service_account_name: str | None,
        kubeconfig: tuple[str, str | None] | None = None,
        get_secret: GetSecret | None = None,
    ) -> Target:
        """The client for an object in `namespace`. kubeconfig: (Secret name, key or None); the
        Secret is read with get_secret (the controller's own identity, in the object's namespace).
        Raises KubeconfigSecretError for a Secret that is missing or refused."""
        account = self.service_account_name(service_account_name)
        base, remote, slot = self.kube, None, ""
        if kubeconfig is not None:
            if get_secret is None:
                raise ValueError("a kubeconfig target needs get_secret")
            base = await self._remote_client(namespace, kubeconfig[0], kubeconfig[1], get_secret)
            remote, slot = base.host, f"remote:{namespace}/{kubeconfig[0]}"
        if not account:
            return Target(base, slot, None, remote)
        user = service_account_user(namespace, account)
        return Target(base.as_service_account(namespace, account), f"{slot}|{user}", user, remote)

    async def _remote_client(
        self, namespace: str, name: str, key: str | None, get_secret: GetSecret
    ) -> KubeClient:
        secret = await get_secret(namespace, name)
        if secret is None:
            raise KubeconfigSecretNotFound(f"kubeconfig Secret '{namespace}/{name}' not found")
        version = str((secret.get("metadata") or {}).get("resourceVersion") or "")
        cache_key = (namespace, name, key or "")
        async with self._lock:
            cached = self._remotes.get(cache_key)
            if cached is not None and cached.version == version and version:
                return cached.client
            connection = connection_from_secret(secret, self.policy, key)
            client = KubeClient(connection, qps=self._qps, burst=self._burst)
            self._remotes[cache_key] = _Remote(version, client)
        if cached is not None:
            await _retire(cached.client)
        return client

    async def forget(self, namespace: str, name: str) -> None:
        """Close the remote clients of a kubeconfig Secret nobody uses any more."""
        for cache_key in [k for k in self._remotes if k[:2] == (namespace, name)]:
            await _retire(self._remotes.pop(cache_key).client)

    async def close(self) -> None:
        for remote in list(self._remotes.values()):
            await _retire(remote.client)
        self._remotes.clear()


async def _retire(client: KubeClient) -> None:
    await client.close()
    client.connection.remove_files()
