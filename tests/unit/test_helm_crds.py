"""The chart's crds/ files as the controller applies them: only CustomResourceDefinitions, with
the origin labels; aliases refused; Established read from the status."""

from __future__ import annotations

import pytest

from tide.controllers.helm.crds import CRDError, chart_crds, established, with_origin
from tide.shared.api.helm import HelmRelease

CRD = """apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec: {group: example.com}
"""


def test_only_crds_are_taken_from_crds_dir():
    files = [
        {
            "name": "crds/widgets.yaml",
            "data": CRD + "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n",
        },
        {"name": "charts/sub/crds/empty.yaml", "data": "---\n"},
    ]
    crds, others = chart_crds(files)
    assert [c["metadata"]["name"] for c in crds] == ["widgets.example.com"]
    assert others == ["v1/ConfigMap/x"]


def test_a_crds_file_with_aliases_is_refused():
    with pytest.raises(CRDError, match=r"crds/bomb\.yaml"):
        chart_crds([{"name": "crds/bomb.yaml", "data": "a: &a [1]\nb: [*a, *a]\n"}])


def test_origin_labels():
    crd, _ = chart_crds([{"name": "crds/w.yaml", "data": CRD}])
    labels = with_origin(crd[0], "app", "apps")["metadata"]["labels"]
    assert labels == {"helm.toolkit.fluxcd.io/name": "app", "helm.toolkit.fluxcd.io/namespace": "apps"}


@pytest.mark.parametrize(
    ("status", "ok"),
    [
        ({}, False),
        ({"conditions": [{"type": "NamesAccepted", "status": "True"}]}, False),
        ({"conditions": [{"type": "Established", "status": "False"}]}, False),
        ({"conditions": [{"type": "Established", "status": "True"}]}, True),
    ],
)
def test_established(status, ok):
    assert established({"status": status}) is ok


@pytest.mark.parametrize(
    ("spec", "install", "upgrade"),
    [
        ({}, "Create", "Skip"),  # Flux's defaults
        ({"install": {"skipCRDs": True}}, "Skip", "Skip"),
        (
            {"install": {"crds": "CreateReplace"}, "upgrade": {"crds": "CreateReplace"}},
            "CreateReplace",
            "CreateReplace",
        ),
        ({"upgrade": {"crds": "Create"}}, "Create", "Create"),
    ],
)
def test_crds_policies(spec, install, upgrade):
    hr = HelmRelease.model_validate(
        {
            "apiVersion": "helm.toolkit.fluxcd.io/v2",
            "kind": "HelmRelease",
            "metadata": {"name": "app", "namespace": "apps"},
            "spec": {"interval": "5m", "chartRef": {"kind": "OCIRepository", "name": "c"}, **spec},
        }
    )
    assert (hr.spec.effective_install().crds_policy(), hr.spec.effective_upgrade().crds_policy()) == (
        install,
        upgrade,
    )


def test_wait_strategy_per_action():
    """Flux's getWaitStrategy: disableWait wins, then spec.waitStrategy, else the watcher."""
    from tide.controllers.helm.actions import install_options, uninstall_options, upgrade_options

    def hr(**spec: object) -> HelmRelease:
        return HelmRelease.model_validate(
            {
                "apiVersion": "helm.toolkit.fluxcd.io/v2",
                "kind": "HelmRelease",
                "metadata": {"name": "app", "namespace": "apps"},
                "spec": {"interval": "5m", "chartRef": {"kind": "OCIRepository", "name": "c"}, **spec},
            }
        )

    assert install_options(hr()).wait == "watcher"
    assert install_options(hr(waitStrategy={"name": "poller"})).wait == "watcher"
    legacy = hr(waitStrategy={"name": "legacy"}, upgrade={"disableWait": True})
    assert (install_options(legacy).wait, upgrade_options(legacy).wait) == ("legacy", "hookOnly")
    assert uninstall_options(legacy).wait == "legacy"
