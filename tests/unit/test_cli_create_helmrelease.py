"""`tide create helmrelease --export` writes what `flux create helmrelease --export` writes.

The expected manifests were written by flux v2.9.5; when the pinned flux CLI is linked in .tide/bin the
same flags are also run through it, so a Flux change shows up here."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tide.cli import objects
from tide.cli.main import main

FLUX = Path(__file__).resolve().parents[2] / ".tide" / "bin" / "flux"

EVERY_FLAG = [
    "--source=HelmRepository/podinfo.other", "--chart=podinfo", "--chart-version=>4.0.0",
    "--interval=10m", "--values={d}/v1.yaml", "--values={d}/v2.yaml", "--values-from=Secret/s1,ConfigMap/c1",
    "--target-namespace=test", "--create-target-namespace", "--storage-namespace=st", "--depends-on=a,ns/b",
    "--release-name=rel", "--crds=CreateReplace", "--chart-interval=5m", "--reconcile-strategy=Revision",
    "--service-account=sa", "--kubeconfig-secret-ref=kc", "--label=x=y",
]  # fmt: skip

CASES: dict[str, tuple[list[str], dict[str, Any]]] = {
    "template": (
        ["--source=HelmRepository/podinfo", "--chart=podinfo"],
        {
            "chart": {
                "spec": {
                    "chart": "podinfo",
                    "reconcileStrategy": "ChartVersion",
                    "sourceRef": {"kind": "HelmRepository", "name": "podinfo"},
                }
            },
            "interval": "1m0s",
        },
    ),
    "every flag": (
        EVERY_FLAG,
        {
            "chart": {
                "spec": {
                    "chart": "podinfo",
                    "interval": "5m0s",
                    "reconcileStrategy": "Revision",
                    "sourceRef": {"kind": "HelmRepository", "name": "podinfo", "namespace": "other"},
                    "version": ">4.0.0",
                }
            },
            "dependsOn": [{"name": "a"}, {"name": "b", "namespace": "ns"}],
            "install": {"crds": "Create", "createNamespace": True},
            "interval": "10m0s",
            "kubeConfig": {"secretRef": {"name": "kc"}},
            "releaseName": "rel",
            "serviceAccountName": "sa",
            "storageNamespace": "st",
            "targetNamespace": "test",
            "upgrade": {"crds": "CreateReplace"},
            "values": {"a": 1, "b": {"c": "x", "d": 2}},
            "valuesFrom": [{"kind": "Secret", "name": "s1"}, {"kind": "ConfigMap", "name": "c1"}],
        },
    ),
    "git chart": (
        ["--source=GitRepository/podinfo", "--chart=./charts/podinfo", "--interval=90s"],
        {
            "chart": {
                "spec": {
                    "chart": "./charts/podinfo",
                    "reconcileStrategy": "ChartVersion",
                    "sourceRef": {"kind": "GitRepository", "name": "podinfo"},
                }
            },
            "interval": "1m30s",
        },
    ),
    "HelmChart ref": (
        ["--chart-ref=HelmChart/podinfo.flux-system"],
        {
            "chartRef": {"kind": "HelmChart", "name": "podinfo", "namespace": "flux-system"},
            "interval": "1m0s",
        },
    ),
    "OCIRepository ref": (
        ["--chart-ref=OCIRepository/podinfo"],
        {"chartRef": {"kind": "OCIRepository", "name": "podinfo"}, "interval": "1m0s"},
    ),
    "target namespace stores there too": (
        ["--source=HelmRepository/x", "--chart=x", "--target-namespace=t", "--crds=Skip"],
        {
            "chart": {
                "spec": {
                    "chart": "x",
                    "reconcileStrategy": "ChartVersion",
                    "sourceRef": {"kind": "HelmRepository", "name": "x"},
                }
            },
            "install": {"crds": "Create"},
            "interval": "1m0s",
            "storageNamespace": "t",
            "targetNamespace": "t",
            "upgrade": {"crds": "Skip"},
        },
    ),
    "values files merge, later wins, lists replaced": (
        ["--source=HelmRepository/x", "--chart=x", "--values={d}/v3.yaml,{d}/v1.yaml"],
        {
            "chart": {
                "spec": {
                    "chart": "x",
                    "reconcileStrategy": "ChartVersion",
                    "sourceRef": {"kind": "HelmRepository", "name": "x"},
                }
            },
            "interval": "1m0s",
            "values": {"a": 1, "b": {"c": "x"}, "z": 1},
        },
    ),
}


@pytest.fixture
def values_dir(tmp_path: Path) -> Path:
    (tmp_path / "v1.yaml").write_text("a: 1\nb:\n  c: x\n")
    (tmp_path / "v2.yaml").write_text("b:\n  d: 2\n")
    (tmp_path / "v3.yaml").write_text("z: 1\na: [1, 2]\n")
    return tmp_path


def _tide_export(argv: list[str], capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    capsys.readouterr()
    assert main(["create", "hr", "podinfo", "-n", "flux-system", *argv, "--export"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("---\n")
    document: dict[str, Any] = yaml.safe_load(text)
    return document


@pytest.mark.parametrize("case", list(CASES))
def test_export_matches_flux(case: str, values_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    flags, spec = CASES[case]
    argv = [f.format(d=values_dir) for f in flags]
    got = _tide_export(argv, capsys)
    metadata: dict[str, Any] = {"name": "podinfo", "namespace": "flux-system"}
    if "--label=x=y" in argv:
        metadata = {"labels": {"x": "y"}, **metadata}
    assert got == {
        "apiVersion": "helm.toolkit.fluxcd.io/v2",
        "kind": "HelmRelease",
        "metadata": metadata,
        "spec": spec,
    }
    assert list(got["spec"]) == sorted(got["spec"]), "Flux writes keys sorted"


@pytest.mark.skipif(not FLUX.exists(), reason="flux CLI not linked in .tide/bin")
@pytest.mark.parametrize("case", list(CASES))
def test_export_is_what_the_flux_cli_writes(
    case: str, values_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [f.format(d=values_dir) for f in CASES[case][0]]
    flux = subprocess.run(
        [str(FLUX), "create", "hr", "podinfo", "-n", "flux-system", *argv, "--export"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert _tide_export(argv, capsys) == yaml.safe_load(flux.stdout)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"source": "HelmRepository/x", "chart": "x", "chart_ref": "HelmChart/y"}, "--chart-ref"),
        ({}, "is required"),
        ({"chart": "x"}, "--source"),
        ({"source": "podinfo", "chart": "x"}, "<kind>/<name>"),
        ({"source": "OCIRepository/x", "chart": "x"}, "HelmRepository, GitRepository, Bucket"),
        ({"chart_ref": "GitRepository/x"}, "OCIRepository, HelmChart"),
        ({"source": "HelmRepository/x", "chart": "x", "values_from": ["Foo/x"]}, "Secret/<name>"),
        ({"source": "HelmRepository/x", "chart": "x", "crds": "Bad"}, "Skip, Create, CreateReplace"),
        ({"source": "HelmRepository/x", "chart": "x", "reconcile_strategy": "Bad"}, "ChartVersion"),
    ],
)
def test_bad_flags_are_refused_with_a_message(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        objects.helm_release("podinfo", "flux-system", **kwargs)


def test_a_values_file_that_is_not_a_map_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    code = main(["create", "hr", "x", "--source=HelmRepository/x", "--chart=x",
                 f"--values={tmp_path}/list.yaml", "--export"])  # fmt: skip
    assert code == 2
    assert "must hold a YAML map" in capsys.readouterr().err


def test_reconcile_with_source_follows_flux_for_helm_releases() -> None:
    from tide.cli.commands.reconcile import source_of
    from tide.cli.kinds import HELM_CHART, HELM_RELEASE, HELM_REPOSITORY, KUSTOMIZATION, OCI_REPOSITORY

    def hr(spec: dict[str, Any]) -> dict[str, Any]:
        return {"metadata": {"name": "app", "namespace": "apps"}, "spec": spec}

    template = {"chart": {"spec": {"chart": "app", "sourceRef": {"kind": "HelmRepository", "name": "r"}}}}
    assert source_of(HELM_RELEASE, hr(template)) == (HELM_CHART, "apps-app", "apps", True)
    template["chart"]["spec"]["sourceRef"]["namespace"] = "flux-system"
    assert source_of(HELM_RELEASE, hr(template)) == (HELM_CHART, "apps-app", "flux-system", True)
    chart_ref = {"chartRef": {"kind": "HelmChart", "name": "c", "namespace": "flux-system"}}
    assert source_of(HELM_RELEASE, hr(chart_ref)) == (HELM_CHART, "c", "flux-system", True)
    oci_ref = {"chartRef": {"kind": "OCIRepository", "name": "o"}}
    assert source_of(HELM_RELEASE, hr(oci_ref)) == (OCI_REPOSITORY, "o", "apps", False)
    chart = {"metadata": {"name": "c", "namespace": "flux-system"},
             "spec": {"sourceRef": {"kind": "HelmRepository", "name": "r"}}}  # fmt: skip
    assert source_of(HELM_CHART, chart) == (HELM_REPOSITORY, "r", "flux-system", False)
    assert source_of(KUSTOMIZATION, hr({})) is None
