"""Flux's kustomize-controller feature gates that Tide honours: each is accepted and does something."""

import pytest

from tide.controllers.kustomize.main import arg_parser
from tide.controllers.kustomize.options import KustomizeOptions
from tide.controllers.kustomize.reconciler import KustomizationReconciler
from tide.shared.api.kustomize import Kustomization
from tide.shared.runtime.process import feature_gates, refuse_unavailable_flags
from tide.shared.runtime.result import StalledError


def kustomization(kind: str) -> Kustomization:
    return Kustomization.model_validate(
        {
            "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
            "kind": "Kustomization",
            "metadata": {"name": "app", "namespace": "apps"},
            "spec": {"interval": "1m", "prune": True, "sourceRef": {"kind": kind, "name": "app"}},
        }
    )


@pytest.mark.parametrize(
    "gates",
    [
        "ExternalArtifact=true",
        "StrictPostBuildSubstitutions=false",
        "CancelHealthCheckOnNewRevision=true,ExternalArtifact=false",
    ],
)
def test_fluxs_gates_are_accepted(gates: str) -> None:
    refuse_unavailable_flags(arg_parser().parse_args([f"--feature-gates={gates}"]))


def test_an_unknown_gate_refuses_to_start() -> None:
    with pytest.raises(SystemExit):
        refuse_unavailable_flags(arg_parser().parse_args(["--feature-gates=NoSuchGate=true"]))


def test_external_artifact_sources_are_served_unless_the_gate_is_off() -> None:
    assert "ExternalArtifact" in KustomizationReconciler()._source_kinds()
    off = KustomizationReconciler(KustomizeOptions(feature_gates={"ExternalArtifact": False}))
    assert "ExternalArtifact" not in off._source_kinds()
    with pytest.raises(StalledError, match="ExternalArtifact feature gate is disabled") as refused:
        off._refuse_unsupported(kustomization("ExternalArtifact"))
    assert refused.value.reason == "AccessDenied"
    off._refuse_unsupported(kustomization("GitRepository"))


def test_strict_substitutions_gate_parses_off() -> None:
    args = arg_parser().parse_args(["--feature-gates=StrictPostBuildSubstitutions=false"])
    assert feature_gates(args) == {"StrictPostBuildSubstitutions": False}
