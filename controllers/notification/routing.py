"""From one accepted event to queued notifications: Alerts that match, their Providers resolved."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from tide.controllers.notification.alerts import compose_metadata, matching_alerts, needs_object_labels
from tide.controllers.notification.dispatch import Dispatcher
from tide.controllers.notification.events import Event
from tide.controllers.notification.providers import COMMIT_STATUS_TYPES, ProviderConfig, ProviderConfigError
from tide.controllers.notification.providers.config import commit_status_id, resolve_provider
from tide.controllers.notification.receivers import Kube

log = logging.getLogger("tide.notification.routing")

NOTIFICATION_API = "notification.toolkit.fluxcd.io/v1beta3"

ObjectsSource = Callable[[], Awaitable[list[dict[str, Any]]]]
ObjectGetter = Callable[[str, str], Awaitable[dict[str, Any] | None]]


class EventRouter:
    def __init__(
        self,
        kube: Kube,
        dispatcher: Dispatcher,
        alerts: ObjectsSource | None = None,
        no_cross_namespace_refs: bool = False,
        providers: ObjectGetter | None = None,
        recorder: Any = None,
    ):
        self.kube = kube
        self.dispatcher = dispatcher
        self.alerts = alerts or self._list_alerts
        self.providers = providers or self._get_provider
        self.recorder = recorder  # tide.shared.runtime.EventRecorder: Warning events on Alerts
        self.no_cross_namespace_refs = no_cross_namespace_refs

    async def _list_alerts(self) -> list[dict[str, Any]]:
        return await self.kube.list(NOTIFICATION_API, "Alert")

    async def _get_provider(self, namespace: str, name: str) -> dict[str, Any] | None:
        return await self.kube.get(NOTIFICATION_API, "Provider", name, namespace)

    async def _involved(self, event: Event) -> dict[str, Any] | None:
        obj = event.involved_object
        if not obj.api_version:
            return None
        try:
            return await self.kube.get(obj.api_version, obj.kind, obj.name, obj.namespace)
        except Exception as exc:
            log.warning("reading %s %s/%s failed: %s", obj.kind, obj.namespace, obj.name, exc)
            return None

    async def __call__(self, event: Event) -> None:
        await self.route(event)

    async def route(self, event: Event) -> int:
        """Queue the event for every matching Alert's Provider; returns how many were queued."""
        alerts: list[Mapping[str, Any]] = [
            a for a in await self.alerts() if not (a.get("spec") or {}).get("suspend")
        ]
        involved: dict[str, Any] | None = None
        fetched = False
        if needs_object_labels(alerts, event):
            involved, fetched = await self._involved(event), True
        labels = ((involved or {}).get("metadata") or {}).get("labels") or {}
        matched = matching_alerts(alerts, event, labels, self.no_cross_namespace_refs)
        obj = event.involved_object
        if not matched:
            log.debug("Discarding event, no alerts found for %s %s/%s", obj.kind, obj.namespace, obj.name)
            return 0
        if not fetched:
            involved = await self._involved(event)
        annotations = ((involved or {}).get("metadata") or {}).get("annotations") or {}
        queued = 0
        for alert in matched:
            notification = compose_metadata(event, alert, annotations)
            meta = alert.get("metadata") or {}
            if notification.conflicts:
                message = (
                    f"metadata keys {', '.join(notification.conflicts)} are set at more than one level; "
                    "the value with the highest precedence was used"
                )
                log.warning("Alert %s/%s: %s", meta.get("namespace"), meta.get("name"), message)
                if self.recorder is not None:
                    self.recorder.record(dict(alert), "Warning", "MetadataAppendFailed", message)
            provider_name = ((alert.get("spec") or {}).get("providerRef") or {}).get("name", "")
            found = await self.provider_config(str(meta.get("namespace", "")), provider_name)
            if found is None:
                continue
            cfg, provider = found
            if cfg.commit_status_expr and cfg.type in COMMIT_STATUS_TYPES:
                try:
                    status = commit_status_id(
                        cfg.commit_status_expr, notification.event.to_json(), alert, provider
                    )
                except ProviderConfigError as exc:
                    log.error("provider %s/%s: %s", cfg.namespace, cfg.name, exc)
                    continue
                cfg = dataclasses.replace(cfg, commit_status_id=status)
            if cfg.type in COMMIT_STATUS_TYPES and "revision" not in notification.event.metadata:
                continue
            log.info(
                "Dispatching event: %s",
                event.message,
                extra={"kind": obj.kind, "objectName": obj.name, "objectNamespace": obj.namespace},
            )
            if self.dispatcher.submit(cfg, notification.event):
                queued += 1
        return queued

    async def provider_config(
        self, namespace: str, name: str
    ) -> tuple[ProviderConfig, dict[str, Any]] | None:
        provider = await self.providers(namespace, name)
        if provider is None:
            log.error("provider %s/%s not found", namespace, name)
            return None
        spec = provider.get("spec") or {}
        if spec.get("suspend"):
            return None

        async def secret(ref_field: str) -> dict[str, Any] | None:
            ref = spec.get(ref_field) or {}
            if not ref.get("name"):
                return None
            found = await self.kube.get("v1", "Secret", ref["name"], namespace)
            if found is None:
                raise ProviderConfigError(f"{ref_field} secret '{namespace}/{ref['name']}' not found")
            return found

        try:
            cfg = resolve_provider(
                provider,
                await secret("secretRef"),
                await secret("certSecretRef"),
                await secret("proxySecretRef"),
            )
            return cfg, provider
        except ProviderConfigError as exc:
            log.error("provider %s/%s: %s", namespace, name, exc)
            return None
