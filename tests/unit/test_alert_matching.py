"""Which Alerts an event reaches (Flux's eventSources, severity, inclusion/exclusion, suspend)
and the metadata a notification carries."""

from __future__ import annotations

from typing import Any

from tide.controllers.notification.alerts import (
    alert_matches,
    compose_metadata,
    cross_namespace_source,
    matching_alerts,
)
from tide.controllers.notification.events import Event, InvolvedObject


def event(
    kind: str = "Kustomization",
    name: str = "app",
    namespace: str = "apps",
    severity: str = "info",
    message: str = "Applied revision: main@sha1:abc",
    metadata: dict[str, str] | None = None,
) -> Event:
    return Event(
        involved_object=InvolvedObject(
            kind=kind, name=name, namespace=namespace, api_version="kustomize.toolkit.fluxcd.io/v1"
        ),
        severity=severity,
        timestamp="2026-01-01T00:00:00Z",
        message=message,
        reason="ReconciliationSucceeded",
        reporting_controller="kustomize-controller",
        metadata=metadata or {},
    )


def alert(namespace: str = "apps", **spec: Any) -> dict[str, Any]:
    spec.setdefault("providerRef", {"name": "p"})
    spec.setdefault("eventSources", [{"kind": "Kustomization", "name": "app"}])
    return {"metadata": {"name": "a", "namespace": namespace}, "spec": spec}


def test_name_kind_and_default_namespace():
    assert alert_matches(alert(), event())
    assert not alert_matches(alert(), event(name="other"))
    assert not alert_matches(alert(), event(kind="GitRepository"))
    assert not alert_matches(alert(namespace="other"), event())


def test_explicit_namespace_source():
    a = alert(
        namespace="flux-system", eventSources=[{"kind": "Kustomization", "name": "app", "namespace": "apps"}]
    )
    assert alert_matches(a, event())
    assert not alert_matches(a, event(), no_cross_namespace_refs=True)


def test_cross_namespace_sources_are_named_for_the_lockdown():
    assert cross_namespace_source(alert()) is None
    assert (
        cross_namespace_source(
            alert(eventSources=[{"kind": "Kustomization", "name": "app", "namespace": "apps"}])
        )
        is None
    )
    a = alert(
        namespace="team",
        eventSources=[
            {"kind": "Kustomization", "name": "app"},
            {"kind": "HelmRelease", "name": "*", "namespace": "ops"},
        ],
    )
    why = cross_namespace_source(a) or ""
    assert "HelmRelease '*' in namespace 'ops'" in why and "--no-cross-namespace-refs" in why


def test_wildcard_name():
    a = alert(eventSources=[{"kind": "Kustomization", "name": "*"}])
    assert alert_matches(a, event(name="anything"))


def test_wildcard_with_match_labels():
    a = alert(eventSources=[{"kind": "Kustomization", "name": "*", "matchLabels": {"team": "a"}}])
    assert alert_matches(a, event(), object_labels={"team": "a", "x": "y"})
    assert not alert_matches(a, event(), object_labels={"team": "b"})
    assert not alert_matches(a, event(), object_labels=None)


def test_severity():
    assert alert_matches(alert(eventSeverity="info"), event(severity="error"))
    assert alert_matches(alert(), event(severity="error"))
    assert alert_matches(alert(eventSeverity="error"), event(severity="error"))
    assert not alert_matches(alert(eventSeverity="error"), event(severity="info"))
    assert not alert_matches(alert(), event(severity="trace"))


def test_inclusion_and_exclusion():
    a = alert(inclusionList=[r".*succeeded.*", r"^Applied"], exclusionList=[r"sha1:abc$"])
    assert not alert_matches(a, event())  # included, but exclusion wins
    assert alert_matches(a, event(message="Applied revision: main@sha1:def"))
    assert not alert_matches(a, event(message="Health check failed"))
    b = alert(exclusionList=["^Dependencies"])
    assert not alert_matches(b, event(message="Dependencies do not meet ready condition"))
    assert alert_matches(b, event(message="Reconciliation finished"))


def test_invalid_regex_is_ignored_not_fatal():
    a = alert(exclusionList=["(unclosed"])
    assert alert_matches(a, event())


def test_suspended_alert_never_matches():
    assert not alert_matches(alert(suspend=True), event())


def test_matching_alerts_filters_list():
    alerts = [alert(), alert(suspend=True), alert(eventSeverity="error")]
    assert len(matching_alerts(alerts, event())) == 1


def test_metadata_precedence_and_conflicts():
    obj_annotations = {
        "event.toolkit.fluxcd.io/env": "prod",
        "event.toolkit.fluxcd.io/revision": "x",
        "other/annotation": "ignored",
    }
    a = alert(eventMetadata={"env": "staging", "cluster": "eu-1"}, summary="Cluster addons")
    n = compose_metadata(event(metadata={"revision": "main@sha1:abc"}), a, obj_annotations)
    assert n.event.metadata == {
        "env": "staging",
        "cluster": "eu-1",
        "summary": "Cluster addons",
        "revision": "main@sha1:abc",
    }
    assert n.conflicts == ["env", "revision"]


def test_metadata_without_conflicts():
    n = compose_metadata(event(metadata={"revision": "r"}), alert(eventMetadata={"cluster": "c"}))
    assert n.event.metadata == {"cluster": "c", "revision": "r"}
    assert n.conflicts == []


async def test_the_alert_reconciler_stalls_cross_namespace_sources_when_locked_down() -> None:
    from types import SimpleNamespace

    import pytest

    from tide.controllers.notification.reconcilers import AlertReconciler
    from tide.shared.api.notification import Alert
    from tide.shared.runtime.result import StalledError

    raw = alert(namespace="team", eventSources=[{"kind": "HelmRelease", "name": "*", "namespace": "ops"}])
    raw.update(apiVersion="notification.toolkit.fluxcd.io/v1beta3", kind="Alert")
    obj = Alert.model_validate(raw)
    ctx = SimpleNamespace(options=SimpleNamespace(no_cross_namespace_refs=True), raw=raw, kube=None)
    with pytest.raises(StalledError, match="cross-namespace references are disabled") as refused:
        await AlertReconciler().reconcile(obj, ctx)  # type: ignore[arg-type]
    assert refused.value.reason == "AccessDenied"
