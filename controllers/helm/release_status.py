"""The HelmRelease decisions around the release loop (pure, table-tested): what in a spec this
controller refuses, whether a dependency is ready, when failure counters reset, and Ready as
Flux summarizes it from Released, TestSuccess and Remediated."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tide.controllers.helm.state import Outcome
from tide.shared.api.helm import HelmRelease

FORCE_AT = "reconcile.fluxcd.io/forceAt"
RESET_AT = "reconcile.fluxcd.io/resetAt"
REQUESTED_AT = "reconcile.fluxcd.io/requestedAt"


def unsupported(hr: HelmRelease) -> str | None:
    """Why this controller cannot reconcile the spec as Flux would, or None. Said, never ignored."""
    spec = hr.spec
    if spec.kube_config is not None and spec.kube_config.config_map_ref is not None:
        return (
            "spec.kubeConfig.configMapRef (workload identity for cloud clusters) is not supported yet; "
            "use spec.kubeConfig.secretRef"
        )
    if spec.kube_config is not None and spec.kube_config.secret_ref is None:
        return "spec.kubeConfig needs a secretRef"
    return None


def cross_namespace_ref(hr: HelmRelease) -> str | None:
    """For --no-cross-namespace-refs: the first reference into another namespace, or None."""
    refs: list[tuple[str, str | None]] = []
    if hr.spec.chart is not None:
        ref = hr.spec.chart.spec.source_ref
        refs.append((f"{ref.kind} '{ref.name}'", ref.namespace))
    if hr.spec.chart_ref is not None:
        refs.append((f"{hr.spec.chart_ref.kind} '{hr.spec.chart_ref.name}'", hr.spec.chart_ref.namespace))
    refs += [(f"dependency '{d.name}'", d.namespace) for d in hr.spec.depends_on or []]
    for what, namespace in refs:
        if namespace and namespace != hr.namespace:
            return (
                f"cannot access {what} in namespace '{namespace}': cross-namespace references are "
                "disabled (--no-cross-namespace-refs)"
            )
    return None


def external_artifact_denied(hr: HelmRelease, enabled: bool) -> str | None:
    """With the ExternalArtifact feature gate off, an ExternalArtifact chartRef is refused (Flux)."""
    ref = hr.spec.chart_ref
    if enabled or ref is None or ref.kind != "ExternalArtifact":
        return None
    return (
        f"can't access '{ref.kind}/{ref.namespace or hr.namespace}/{ref.name}', "
        "ExternalArtifact feature gate is disabled"
    )


def dependency_not_ready(dep: Mapping[str, Any] | None, key: tuple[str, str]) -> str | None:
    """Flux's dependency check: the HelmRelease exists and is Ready at its current generation."""
    namespace, name = key
    if dep is None:
        return f"dependency '{namespace}/{name}' not found"
    generation = (dep.get("metadata") or {}).get("generation")
    status = dep.get("status") or {}
    ready = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), None)
    if status.get("observedGeneration") != generation or ready is None or ready.get("status") != "True":
        return f"dependency '{namespace}/{name}' is not ready"
    return None


@dataclass(frozen=True)
class Requests:
    """The force and reset requests an annotation set carries (each with its token, once)."""

    force: str | None = None
    reset: str | None = None


def requests(
    annotations: Mapping[str, str], handled_force: str | None, handled_reset: str | None
) -> Requests:
    """Flux: forceAt/resetAt count when they equal requestedAt and were not handled yet."""
    requested = annotations.get(REQUESTED_AT)

    def new(key: str, handled: str | None) -> str | None:
        value = annotations.get(key)
        return value if value and value == requested and value != handled else None

    return Requests(new(FORCE_AT, handled_force), new(RESET_AT, handled_reset))


def attempt_changed(hr: HelmRelease, revision: str, config_digest: str) -> bool:
    """A new generation, chart version or values: the failure counters start again (Flux)."""
    status = hr.status
    return (
        status.last_attempted_generation != hr.metadata.generation
        or status.last_attempted_revision != revision
        or status.last_attempted_config_digest != config_digest
    )


Condition = Mapping[str, Any]


def ready_from(conditions: Sequence[Condition], test_counts: bool) -> tuple[str, str, str] | None:
    """Ready (status, reason, message) as Flux summarizes it: a remediation means not ready; then
    failed tests (unless ignored), then Released; tests that passed give Ready their message."""
    by_type = {str(c.get("type")): c for c in conditions}
    remediated = by_type.get("Remediated")
    if remediated is not None and remediated.get("status") == "True":
        return "False", str(remediated.get("reason")), str(remediated.get("message"))
    test = by_type.get("TestSuccess")
    released = by_type.get("Released")
    if test_counts and test is not None and test.get("status") == "False":
        return "False", str(test.get("reason")), str(test.get("message"))
    if released is None:
        return None
    if released.get("status") != "True":
        return "False", str(released.get("reason")), str(released.get("message"))
    if test_counts and test is not None and test.get("status") == "True":
        return "True", str(test.get("reason")), str(test.get("message"))
    return "True", str(released.get("reason")), str(released.get("message"))


def spec_observed(outcome: Outcome, summary: tuple[str, str, str] | None) -> bool:
    """Whether the observed post-renderer and common-metadata digests now follow the spec: as Flux's
    summarize when no action is left, and only when Ready (a post-renderer that failed keeps its old
    digest, so the next reconcile tries it again)."""
    return outcome is Outcome.DONE and summary is not None and summary[0] == "True"


REQUEUE_NOW = 1.0
"""After a remediation with retries left: the next attempt right away (Flux requeues at once)."""

Summary = tuple[str, str, str]


@dataclass(frozen=True)
class Ending:
    """How a reconcile ends after the release loop: a requeue, an error (backoff) or a stall."""

    requeue_after: float | None = None
    error: tuple[str, str] | None = None
    stall: tuple[str, str] | None = None


def ending(
    outcome: Outcome, summary: Summary | None, stall_reason: str, stall_message: str, retry_interval: float
) -> Ending:
    """The loop's outcome as the runtime takes it. A release that is not Ready but will be retried
    returns a requeue (Ready=False stays, Reconciling ProgressingWithRetry) rather than an error:
    the action already sent its Event."""
    if outcome is Outcome.STALLED:
        cause = summary[2] if summary else "retries exhausted"
        return Ending(
            stall=(stall_reason or "RetriesExceeded", f"{stall_message}: {cause}" if stall_message else cause)
        )
    if outcome is Outcome.ERROR:
        return Ending(
            error=(summary[1], summary[2]) if summary else ("ReconciliationFailed", "release failed")
        )
    if outcome is Outcome.RETRY_AFTER_INTERVAL:
        return Ending(requeue_after=retry_interval)
    if outcome is Outcome.REQUEUE:
        return Ending(requeue_after=REQUEUE_NOW)
    return Ending()
