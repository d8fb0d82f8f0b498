"""Reconcilers for Receiver (status.webhookPath, Ready), Provider and Alert (validation only:
in notification.toolkit.fluxcd.io/v1beta3 they are static objects without status, as in Flux)."""

from __future__ import annotations

from typing import Any

from tide.controllers.notification.alerts import cross_namespace_source, invalid_regexes
from tide.controllers.notification.providers import (
    ADDRESS_OPTIONAL,
    BUILDERS,
    GIT_ADDRESS_TYPES,
    ProviderConfigError,
)
from tide.controllers.notification.providers.base import require_url
from tide.controllers.notification.providers.config import (
    check_commit_status_expr,
    resolve_provider,
)
from tide.controllers.notification.receivers import (
    GCR_SECRET_KEYS,
    RECEIVER_TYPES,
    ResourceFilter,
    webhook_path,
)
from tide.shared.api.notification import Alert, Provider, Receiver
from tide.shared.kube import secret_data
from tide.shared.runtime import ReconcileContext, ReconcileError, Result, StalledError
from tide.shared.runtime.conditions import (
    ACCESS_DENIED_REASON,
    READY,
    SUCCEEDED_REASON,
    TOKEN_NOT_FOUND_REASON,
    VALIDATION_FAILED_REASON,
)
from tide.shared.runtime.reconciler import FLUX_FINALIZER, Reconciler
from tide.shared.runtime.redaction import redact


class ReceiverReconciler(Reconciler[Receiver]):
    model = Receiver
    finalizer = FLUX_FINALIZER

    async def reconcile(self, obj: Receiver, ctx: ReconcileContext) -> Result:
        name, namespace = obj.metadata.name or "", obj.metadata.namespace or ""
        spec = obj.spec
        if spec.type not in RECEIVER_TYPES:
            raise StalledError(
                VALIDATION_FAILED_REASON, f"receiver type '{spec.type}' is not supported by Tide"
            )
        for resource in spec.resources:
            if resource.name == "*" and not resource.match_labels:
                raise StalledError(
                    VALIDATION_FAILED_REASON,
                    f"resource {resource.kind}/*: matchLabels is required when name is '*'",
                )
        if spec.resource_filter:
            try:
                ResourceFilter(spec.resource_filter)
            except ValueError as exc:
                raise StalledError(VALIDATION_FAILED_REASON, str(exc)) from None
        if spec.secret_ref is None:
            raise StalledError(TOKEN_NOT_FOUND_REASON, "spec.secretRef is required for this receiver type")
        secret = await ctx.kube.get("v1", "Secret", spec.secret_ref.name, namespace)
        if secret is None:
            raise ReconcileError(
                TOKEN_NOT_FOUND_REASON,
                f"unable to read token from secret '{namespace}/{spec.secret_ref.name}'",
            )
        data = secret_data(secret)
        if "token" not in data:
            raise ReconcileError(
                TOKEN_NOT_FOUND_REASON,
                f"invalid '{namespace}/{spec.secret_ref.name}' secret data: required field 'token'",
            )
        missing = [key for key in GCR_SECRET_KEYS if spec.type == "gcr" and not data.get(key)]
        if missing:
            raise ReconcileError(
                TOKEN_NOT_FOUND_REASON,
                f"invalid '{namespace}/{spec.secret_ref.name}' secret data: gcr receivers require "
                f"{' and '.join(repr(k) for k in missing)} (the Pub/Sub push token's audience and "
                "service account email)",
            )
        path = webhook_path(data["token"].decode(), name, namespace)
        previous = ctx.status.webhook_path
        ctx.status.webhook_path = path
        message = f"Receiver initialized for path: {path}"
        ctx.set_condition(READY, "True", SUCCEEDED_REASON, message)
        if previous != path:
            ctx.event("Normal", SUCCEEDED_REASON, message)
        return Result()

    async def finalize(self, obj: Receiver, ctx: ReconcileContext) -> None:
        return None


class ProviderReconciler(Reconciler[Provider]):
    model = Provider
    finalizer: str | None = None

    async def reconcile(self, obj: Provider, ctx: ReconcileContext) -> Result:
        namespace = obj.metadata.namespace or ""
        spec = obj.spec
        if spec.type not in BUILDERS:
            raise StalledError(
                VALIDATION_FAILED_REASON,
                f"provider type '{spec.type}' is not supported by Tide yet; no notification will be sent",
            )
        secrets: dict[str, dict[str, Any] | None] = {}
        for field, ref in (
            ("secretRef", spec.secret_ref),
            ("certSecretRef", spec.cert_secret_ref),
            ("proxySecretRef", spec.proxy_secret_ref),
        ):
            secrets[field] = None
            if ref is not None:
                secrets[field] = await ctx.kube.get("v1", "Secret", ref.name, namespace)
                if secrets[field] is None:
                    raise ReconcileError(
                        "SecretNotFound", f"{field} secret '{namespace}/{ref.name}' not found"
                    )
        try:
            if spec.commit_status_expr:
                check_commit_status_expr(spec.commit_status_expr)
            cfg = resolve_provider(
                obj.to_dict(), secrets["secretRef"], secrets["certSecretRef"], secrets["proxySecretRef"]
            )
        except ProviderConfigError as exc:
            raise StalledError(VALIDATION_FAILED_REASON, str(exc)) from None
        try:
            if cfg.address or spec.type not in ADDRESS_OPTIONAL:
                if spec.type not in GIT_ADDRESS_TYPES:
                    require_url(cfg.address, spec.type)
        except ProviderConfigError as exc:
            raise StalledError(VALIDATION_FAILED_REASON, redact(str(exc), cfg.secret_values)) from None
        return Result()

    async def finalize(self, obj: Provider, ctx: ReconcileContext) -> None:
        return None


class AlertReconciler(Reconciler[Alert]):
    model = Alert
    finalizer: str | None = None

    async def reconcile(self, obj: Alert, ctx: ReconcileContext) -> Result:
        spec = obj.spec
        bad = invalid_regexes(list(spec.inclusion_list or []) + list(spec.exclusion_list or []))
        if bad:
            raise StalledError(VALIDATION_FAILED_REASON, f"invalid regular expressions: {', '.join(bad)}")
        if getattr(ctx.options, "no_cross_namespace_refs", False):
            denied = cross_namespace_source(ctx.raw)
            if denied is not None:
                raise StalledError(ACCESS_DENIED_REASON, denied)
        provider = await ctx.kube.get(
            "notification.toolkit.fluxcd.io/v1beta3",
            "Provider",
            spec.provider_ref.name,
            obj.metadata.namespace,
        )
        if provider is None:
            raise ReconcileError(
                "ProviderNotFound", f"provider '{obj.metadata.namespace}/{spec.provider_ref.name}' not found"
            )
        return Result()

    async def finalize(self, obj: Alert, ctx: ReconcileContext) -> None:
        return None
