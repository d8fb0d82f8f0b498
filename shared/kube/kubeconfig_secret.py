"""A remote cluster from a kubeconfig stored in a Secret (Flux's `spec.kubeConfig.secretRef`).

The Secret is written by whoever may write Secrets in the object's namespace: a tenant. So the
kubeconfig is read as hostile input. It may not run commands in the controller (`exec` credential
plugins, `auth-provider` entries) unless --insecure-kubeconfig-exec, and may not make the controller
read its own files (certificates, keys or tokens named by path: the controller's ServiceAccount token
is one such file) nor skip TLS verification unless --insecure-kubeconfig-tls. Each refusal is its own
error type with a message saying what to change.
"""

from __future__ import annotations

import binascii
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tide.shared.kube.config import Connection, KubeconfigError, connection_from_kubeconfig, kubeconfig_parts
from tide.shared.kube.secrets import secret_data

# The keys Flux reads, in order, when secretRef names no key.
DEFAULT_KEYS = ("value", "value.yaml")
# User entries naming a file the controller would read.
USER_FILES = ("client-certificate", "client-key", "tokenFile")


class KubeconfigSecretError(KubeconfigError):
    """A kubeconfig Secret that cannot be used; subclasses say why."""


class KubeconfigKeyMissing(KubeconfigSecretError):
    pass


class KubeconfigInvalid(KubeconfigSecretError):
    pass


class KubeconfigExecRefused(KubeconfigSecretError):
    """An exec credential plugin or auth-provider without --insecure-kubeconfig-exec."""


class KubeconfigFileRefused(KubeconfigSecretError):
    """A certificate, key or token named by path, or insecure-skip-tls-verify, without
    --insecure-kubeconfig-tls."""


@dataclass(frozen=True)
class KubeconfigPolicy:
    """What a kubeconfig Secret may ask of the controller (Flux's --insecure-kubeconfig-* flags)."""

    allow_exec: bool = False
    allow_insecure_tls: bool = False


def kubeconfig_bytes(secret: Mapping[str, Any], key: str | None = None) -> bytes:
    """The kubeconfig in a Secret: the named key, else `value`, else `value.yaml`."""
    data = secret_data(secret)
    meta = secret.get("metadata") or {}
    where = f"Secret '{meta.get('namespace', '')}/{meta.get('name', '')}'"
    keys = (key,) if key else DEFAULT_KEYS
    for candidate in keys:
        if data.get(candidate):
            return data[candidate]
    wanted = " or ".join(f"'{k}'" for k in keys)
    raise KubeconfigKeyMissing(f"{where} has no key {wanted} holding a kubeconfig")


def check_kubeconfig(document: Any, policy: KubeconfigPolicy) -> None:
    """Refuse what the policy does not allow, before anything of the kubeconfig is used."""
    cluster, user = kubeconfig_parts(document)
    if not policy.allow_exec:
        if user.get("exec"):
            command = (user.get("exec") or {}).get("command", "")
            raise KubeconfigExecRefused(
                f"kubeconfig user runs the exec credential plugin {command!r}: refused, as commands "
                "from a Secret would run in the controller; use a token or client certificate, or "
                "start the controller with --insecure-kubeconfig-exec"
            )
        if user.get("auth-provider"):
            raise KubeconfigExecRefused(
                "kubeconfig user has an auth-provider: refused; use a token or client certificate, "
                "or start the controller with --insecure-kubeconfig-exec"
            )
    if user.get("auth-provider"):
        raise KubeconfigInvalid(
            "kubeconfig auth-provider entries are not supported for remote clusters; use a token, a "
            "client certificate or an exec credential plugin"
        )
    if user.get("as") or user.get("as-groups") or user.get("as-user-extra"):
        raise KubeconfigInvalid(
            "kubeconfig user impersonates ('as'): not supported for remote clusters; use "
            "spec.serviceAccountName to act as a ServiceAccount there"
        )
    if policy.allow_insecure_tls:
        return
    named = [f"user {entry} {user[entry]!r}" for entry in USER_FILES if user.get(entry)]
    if cluster.get("certificate-authority"):
        named.insert(0, f"cluster certificate-authority {cluster['certificate-authority']!r}")
    if named:
        raise KubeconfigFileRefused(
            f"kubeconfig names files on the controller's disk ({', '.join(named)}): refused; embed "
            "them (certificate-authority-data, client-certificate-data, client-key-data, token) or "
            "start the controller with --insecure-kubeconfig-tls"
        )
    if cluster.get("insecure-skip-tls-verify"):
        raise KubeconfigFileRefused(
            "kubeconfig cluster sets insecure-skip-tls-verify: refused; add "
            "certificate-authority-data, or start the controller with --insecure-kubeconfig-tls"
        )


def connection_from_kubeconfig_bytes(raw: bytes, policy: KubeconfigPolicy) -> Connection:
    try:
        document = yaml.safe_load(raw.decode())
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise KubeconfigInvalid(f"kubeconfig is not valid YAML: {err}") from err
    try:
        check_kubeconfig(document, policy)
        return connection_from_kubeconfig(document, Path.cwd(), own_files=True)
    except KubeconfigSecretError:
        raise
    except KubeconfigError as err:
        raise KubeconfigInvalid(str(err)) from err
    except (binascii.Error, ValueError, TypeError, KeyError) as err:
        raise KubeconfigInvalid(f"kubeconfig has malformed data: {err}") from err


def connection_from_secret(
    secret: Mapping[str, Any], policy: KubeconfigPolicy, key: str | None = None
) -> Connection:
    """The Connection a kubeconfig Secret describes, or a KubeconfigSecretError."""
    return connection_from_kubeconfig_bytes(kubeconfig_bytes(secret, key), policy)
