"""A Provider object plus its Secrets resolved into a ProviderConfig (pure)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from tide.controllers.notification.providers.base import ProviderConfig, ProviderConfigError
from tide.shared.api.meta import parse_duration
from tide.shared.kube import secret_data
from tide.shared.runtime.redaction import redact

# Keys of a Provider's Secrets whose values are credentials (a Slack or Teams address is one).
SECRET_KEYS = ("address", "password", "token", "headers", "proxy", "tls.key", "keyFile")

DEFAULT_TIMEOUT = 15.0


def _text(data: Mapping[str, bytes], key: str) -> str:
    return data[key].decode().strip() if key in data else ""


def parse_headers(raw: bytes) -> dict[str, str]:
    try:
        value = YAML(typ="safe").load(raw.decode())
    except (YAMLError, UnicodeDecodeError) as exc:
        raise ProviderConfigError(f"secret key 'headers' is not a YAML map: {exc}") from None
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ProviderConfigError("secret key 'headers' must be a YAML map of header names to values")
    return {str(k): str(v) for k, v in value.items()}


def secret_values(*secrets: Mapping[str, Any] | None) -> tuple[str, ...]:
    """The credential values of a Provider's Secrets, and each value of a `headers` map."""
    values: list[str] = []
    for secret in secrets:
        for key, raw in secret_data(secret).items():
            if key not in SECRET_KEYS:
                continue
            text = raw.decode(errors="replace")
            values.append(text)
            if key == "headers":
                values += [line.partition(":")[2].strip().strip("'\"") for line in text.splitlines()]
    return tuple(values)


def resolve_provider(
    provider: Mapping[str, Any],
    secret: Mapping[str, Any] | None = None,
    cert_secret: Mapping[str, Any] | None = None,
    proxy_secret: Mapping[str, Any] | None = None,
) -> ProviderConfig:
    """A ProviderConfig whose secret_values are the Secrets' credentials; a ProviderConfigError's
    message has them masked."""
    hidden = secret_values(secret, cert_secret, proxy_secret)
    try:
        cfg = _resolve_provider(provider, secret, cert_secret, proxy_secret)
    except ProviderConfigError as exc:
        raise ProviderConfigError(redact(str(exc), hidden)) from None
    cfg.secret_values = hidden
    return cfg


def _resolve_provider(
    provider: Mapping[str, Any],
    secret: Mapping[str, Any] | None = None,
    cert_secret: Mapping[str, Any] | None = None,
    proxy_secret: Mapping[str, Any] | None = None,
) -> ProviderConfig:
    """Flux's rules: the secret's address/username/password/token/headers win over the spec;
    certSecretRef gives `ca.crt` (legacy `caFile`) and optionally `tls.crt`/`tls.key`;
    proxySecretRef gives `address`, `username`, `password` (spec.proxy and the secret's
    `proxy` key are the deprecated forms)."""
    meta = provider.get("metadata") or {}
    spec = provider.get("spec") or {}
    data = secret_data(secret)
    timeout = DEFAULT_TIMEOUT
    if spec.get("timeout"):
        try:
            timeout = parse_duration(str(spec["timeout"]), go=True)
        except ValueError as exc:
            raise ProviderConfigError(str(exc)) from None
    cfg = ProviderConfig(
        type=str(spec.get("type", "")),
        address=_text(data, "address") or str(spec.get("address") or ""),
        channel=str(spec.get("channel") or ""),
        username=_text(data, "username") or str(spec.get("username") or ""),
        password=_text(data, "password"),
        token=_text(data, "token"),
        headers=parse_headers(data["headers"]) if "headers" in data else {},
        proxy=_text(data, "proxy") or str(spec.get("proxy") or ""),
        timeout=timeout,
        name=str(meta.get("name", "")),
        namespace=str(meta.get("namespace", "")),
        uid=str(meta.get("uid", "")),
        commit_status_expr=str(spec.get("commitStatusExpr") or ""),
    )
    if cert_secret is not None:
        certs = secret_data(cert_secret)
        cfg.ca_pem = certs.get("ca.crt") or certs.get("caFile")
        if not cfg.ca_pem:
            raise ProviderConfigError("certSecretRef secret has no 'ca.crt' key")
        if "tls.crt" in certs and "tls.key" in certs:
            cfg.client_cert_pem, cfg.client_key_pem = certs["tls.crt"], certs["tls.key"]
    if proxy_secret is not None:
        proxy = secret_data(proxy_secret)
        cfg.proxy = _text(proxy, "address")
        if not cfg.proxy:
            raise ProviderConfigError("proxySecretRef secret has no 'address' key")
        cfg.proxy_username = _text(proxy, "username")
        cfg.proxy_password = _text(proxy, "password")
    return cfg


def commit_status_id(
    expression: str, event: Mapping[str, Any], alert: Mapping[str, Any], provider: Mapping[str, Any]
) -> str:
    """Evaluate spec.commitStatusExpr (CEL over `event`, `alert`, `provider`) to a status id."""
    import celpy

    env = celpy.Environment()
    try:
        program = env.program(env.compile(expression))
        result = program.evaluate(
            {
                "event": celpy.json_to_cel(dict(event)),
                "alert": celpy.json_to_cel(dict(alert)),
                "provider": celpy.json_to_cel(dict(provider)),
            }
        )
    except Exception as exc:
        raise ProviderConfigError(f"commitStatusExpr '{expression}' failed: {exc}") from None
    if not isinstance(result, str) or not result:
        raise ProviderConfigError(f"commitStatusExpr '{expression}' must evaluate to a non-empty string")
    return str(result)


def check_commit_status_expr(expression: str) -> None:
    """Parse spec.commitStatusExpr; raises ProviderConfigError when it is not valid CEL."""
    import celpy

    env = celpy.Environment()
    try:
        env.compile(expression)
    except Exception as exc:
        raise ProviderConfigError(f"invalid commitStatusExpr '{expression}': {exc}") from None
