"""HelmChart revisions as Flux writes them, and which HelmCharts a source's new artifact wakes."""

from __future__ import annotations

from typing import Any

import pytest

from tide.controllers.source.helm_chart import charts_referencing, version_metadata
from tide.shared.api.source import HelmChart


def chart(generation: int = 3, **spec: Any) -> HelmChart:
    return HelmChart.model_validate(
        {
            "apiVersion": "source.toolkit.fluxcd.io/v1",
            "kind": "HelmChart",
            "metadata": {"name": "app", "namespace": "ns", "generation": generation},
            "spec": {
                "chart": "app",
                "interval": "1m",
                "sourceRef": {"kind": "HelmRepository", "name": "r"},
                **spec,
            },
        }
    )


GIT_REV = "main@sha1:0123456789abcdef0123456789abcdef01234567"


@pytest.mark.parametrize(
    ("spec", "kind", "revision", "want"),
    [
        ({}, "HelmRepository", None, None),
        ({"valuesFiles": ["a.yaml"]}, "HelmRepository", None, "3"),
        ({"reconcileStrategy": "Revision"}, "HelmRepository", "sha256:abc", None),  # not for repositories
        ({}, "GitRepository", GIT_REV, None),
        ({"reconcileStrategy": "Revision"}, "GitRepository", GIT_REV, "0123456789ab"),
        (
            {"reconcileStrategy": "Revision", "valuesFiles": ["a.yaml"]},
            "GitRepository",
            GIT_REV,
            "0123456789ab.3",
        ),
        ({"valuesFile": "a.yaml"}, "GitRepository", GIT_REV, "3"),
    ],
)
def test_version_metadata(spec: dict[str, Any], kind: str, revision: str | None, want: str | None) -> None:
    assert version_metadata(chart(**spec), kind, revision) == want


def test_charts_referencing_a_source() -> None:
    def item(name: str, ns: str, kind: str, source: str) -> dict[str, Any]:
        return {
            "metadata": {"name": name, "namespace": ns},
            "spec": {"sourceRef": {"kind": kind, "name": source}},
        }

    items = [
        item("a", "ns", "HelmRepository", "charts"),
        item("b", "ns", "GitRepository", "charts"),
        item("c", "other", "HelmRepository", "charts"),
        item("d", "ns", "HelmRepository", "charts"),
    ]
    assert charts_referencing(items, "HelmRepository", "ns", "charts") == [("ns", "a"), ("ns", "d")]
