"""Release naming: releaseName, targetNamespace, storageNamespace defaults and the 53-character limit."""

from __future__ import annotations

import pytest

from tide.shared.api.helm import HelmRelease


def release(name="app", namespace="apps", **spec):
    return HelmRelease.model_validate(
        {
            "apiVersion": "helm.toolkit.fluxcd.io/v2",
            "kind": "HelmRelease",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"interval": "5m", "chartRef": {"kind": "OCIRepository", "name": "c"}, **spec},
        }
    )


@pytest.mark.parametrize(
    ("hr", "name", "namespace", "storage"),
    [
        (release(), "app", "apps", "apps"),
        (release(targetNamespace="prod"), "prod-app", "prod", "apps"),
        (release(targetNamespace="prod", storageNamespace="helm"), "prod-app", "prod", "helm"),
        (release(releaseName="custom", targetNamespace="prod"), "custom", "prod", "apps"),
        # helm-controller's TestShortenName vectors
        (
            release("release-name-with-very-long-name-which-is-longer-than-53-characters"),
            "release-name-with-very-long-name-which-i-788ca0d0d7b0",
            "apps",
            "apps",
        ),
        (
            release(
                "name-with-very-long-name-which-is-longer-than-53-characters",
                targetNamespace="another-release",
            ),
            "another-release-name-with-very-long-name-7e72150d5a36",
            "another-release",
            "apps",
        ),
    ],
)
def test_release_name_and_namespaces_as_flux_names_them(hr, name, namespace, storage):
    assert (hr.release_name(), hr.release_namespace(), hr.storage_namespace()) == (name, namespace, storage)
