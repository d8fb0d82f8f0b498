"""Which HelmRelease a HelmChart's readiness wakes: the one whose spec.chart makes that chart, found
from the spec as well as from status.helmChart (written at the end of the reconcile that made it)."""

from __future__ import annotations

import pytest

from tide.controllers.helm.reconciler import generated_chart_key
from tide.shared.api.helm import HelmRelease


def release(chart: dict | None = None, chart_ref: dict | None = None) -> dict:
    spec: dict = {"interval": "5m"}
    if chart is not None:
        spec["chart"] = chart
    if chart_ref is not None:
        spec["chartRef"] = chart_ref
    return {
        "apiVersion": "helm.toolkit.fluxcd.io/v2",
        "kind": "HelmRelease",
        "metadata": {"name": "podinfo", "namespace": "apps"},
        "spec": spec,
    }


@pytest.mark.parametrize(
    "source_ref",
    [
        {"kind": "HelmRepository", "name": "repo"},
        {"kind": "HelmRepository", "name": "repo", "namespace": "flux-system"},
    ],
)
def test_the_generated_chart_is_the_models(source_ref) -> None:
    raw = release(chart={"spec": {"chart": "podinfo", "sourceRef": source_ref}})
    hr = HelmRelease.model_validate(raw)
    assert generated_chart_key(raw) == f"{hr.helm_chart_namespace()}/{hr.helm_chart_name()}"


def test_a_chart_ref_makes_no_chart() -> None:
    assert generated_chart_key(release(chart_ref={"kind": "OCIRepository", "name": "app"})) is None
    assert generated_chart_key({"metadata": {"name": "x"}}) is None
