"""`tide install --components`: only controllers this Tide ships are installed."""

from __future__ import annotations

import pytest

from tide.cli import manifests
from tide.cli.errors import EXIT_USAGE, CliError


def test_the_default_components_are_built() -> None:
    assert set(manifests.DEFAULT_COMPONENTS) <= set(manifests.built_components())


def test_a_component_without_its_program_is_refused() -> None:
    built = ("source-controller", "kustomize-controller")
    with pytest.raises(CliError) as refused:
        manifests.check_components(("source-controller", "helm-controller"), built)
    assert refused.value.exit_code == EXIT_USAGE
    assert "helm-controller is not part of this Tide release yet" in str(refused.value)
    with pytest.raises(CliError, match="unknown component"):
        manifests.check_components(("image-reflector-controller",), built)
    manifests.check_components(built, built)


def test_the_helm_controller_is_built() -> None:
    assert "helm-controller" in manifests.built_components()
    manifests.check_components(("source-controller", "helm-controller"), manifests.built_components())
