"""Which Alerts an event reaches, and the metadata each notification carries. Pure functions.

Alerts and involved objects are plain Kubernetes dicts (as read from the API), so this module
works the same on informer caches and on test fixtures.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tide.controllers.notification.events import EVENT_PREFIX, Event

log = logging.getLogger("tide.notification.alerts")


@functools.lru_cache(maxsize=1024)
def _compile(expression: str) -> re.Pattern[str] | None:
    try:
        return re.compile(expression)
    except re.error as exc:
        log.error("failed to compile regex %r: %s", expression, exc)
        return None


def invalid_regexes(expressions: list[str]) -> list[str]:
    return [e for e in expressions if _compile(e) is None]


def _spec(alert: Mapping[str, Any]) -> Mapping[str, Any]:
    return alert.get("spec") or {}


def _namespace(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("namespace", ""))


def labels_match(selector: Mapping[str, str], labels: Mapping[str, str] | None) -> bool:
    labels = labels or {}
    return all(labels.get(k) == v for k, v in selector.items())


def needs_object_labels(alerts: list[Mapping[str, Any]], event: Event) -> bool:
    """True when some Alert's `*` source with matchLabels could match this event's kind."""
    for alert in alerts:
        for source in _spec(alert).get("eventSources") or []:
            if (
                source.get("name") == "*"
                and source.get("matchLabels")
                and source.get("kind") == event.involved_object.kind
            ):
                return True
    return False


def source_matches(
    source: Mapping[str, Any],
    alert_namespace: str,
    event: Event,
    object_labels: Mapping[str, str] | None,
) -> bool:
    obj = event.involved_object
    namespace = source.get("namespace") or alert_namespace
    if obj.namespace != namespace:
        return False
    if obj.kind != source.get("kind"):
        return False
    name = source.get("name", "")
    if name == "*":
        selector = source.get("matchLabels") or {}
        return not selector or labels_match(selector, object_labels)
    return bool(obj.name == name)


def severity_matches(alert_severity: str | None, event_severity: str) -> bool:
    if event_severity == "trace":
        return False
    wanted = alert_severity or "info"
    return wanted == "info" or wanted == event_severity


def message_allowed(spec: Mapping[str, Any], message: str) -> bool:
    """inclusionList (if any) must match; exclusionList wins."""
    inclusion = spec.get("inclusionList") or []
    if inclusion:
        patterns = [p for p in map(_compile, inclusion) if p is not None]
        if not any(p.search(message) for p in patterns):
            return False
    for pattern in map(_compile, spec.get("exclusionList") or []):
        if pattern is not None and pattern.search(message):
            return False
    return True


def cross_namespace_source(alert: Mapping[str, Any]) -> str | None:
    """For --no-cross-namespace-refs: why the Alert's first event source in another namespace is
    refused, or None (providerRef is always in the Alert's namespace)."""
    alert_ns = _namespace(alert)
    for source in _spec(alert).get("eventSources") or []:
        namespace = source.get("namespace")
        if namespace and namespace != alert_ns:
            return (
                f"cannot use events of {source.get('kind')} '{source.get('name')}' in namespace "
                f"'{namespace}': cross-namespace references are disabled (--no-cross-namespace-refs); "
                "those events are not forwarded"
            )
    return None


def alert_matches(
    alert: Mapping[str, Any],
    event: Event,
    object_labels: Mapping[str, str] | None = None,
    no_cross_namespace_refs: bool = False,
) -> bool:
    spec = _spec(alert)
    if spec.get("suspend"):
        return False
    if not severity_matches(spec.get("eventSeverity"), event.severity):
        return False
    alert_ns = _namespace(alert)
    if no_cross_namespace_refs and event.involved_object.namespace != alert_ns:
        return False
    if not any(
        source_matches(source, alert_ns, event, object_labels) for source in spec.get("eventSources") or []
    ):
        return False
    return message_allowed(spec, event.message)


def matching_alerts(
    alerts: list[Mapping[str, Any]],
    event: Event,
    object_labels: Mapping[str, str] | None = None,
    no_cross_namespace_refs: bool = False,
) -> list[Mapping[str, Any]]:
    return [a for a in alerts if alert_matches(a, event, object_labels, no_cross_namespace_refs)]


@dataclass
class Notification:
    """What one Provider is asked to send for one Alert: the event with its composed metadata."""

    event: Event
    conflicts: list[str]


def compose_metadata(
    event: Event,
    alert: Mapping[str, Any],
    object_annotations: Mapping[str, str] | None = None,
) -> Notification:
    """Metadata precedence, low to high: the object's `event.toolkit.fluxcd.io/*` annotations,
    the Alert's eventMetadata, its summary, the controller's own metadata. A key set with a
    different value at two levels is a conflict (the higher level wins)."""
    spec = _spec(alert)
    layers: list[dict[str, str]] = []
    layers.append(
        {
            k[len(EVENT_PREFIX) :]: v
            for k, v in (object_annotations or {}).items()
            if k.startswith(EVENT_PREFIX) and isinstance(v, str)
        }
    )
    layers.append({str(k): str(v) for k, v in (spec.get("eventMetadata") or {}).items()})
    summary = spec.get("summary")
    layers.append({"summary": summary} if summary else {})
    layers.append(dict(event.metadata))
    merged: dict[str, str] = {}
    conflicts: list[str] = []
    for layer in layers:
        for key, value in layer.items():
            if key in merged and merged[key] != value and key not in conflicts:
                conflicts.append(key)
            merged[key] = value
    return Notification(event=event.with_metadata(merged), conflicts=sorted(conflicts))
