"""Flux's YAML, from the seed and from Flux's docs, is accepted by the real API server with Tide's CRDs;
invalid specs are refused with a message naming the field."""

import json
from collections.abc import Callable
from pathlib import Path
from subprocess import CompletedProcess
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.e2e

EXAMPLES = Path(__file__).resolve().parent / "examples"
Kubectl = Callable[..., CompletedProcess[str]]

VALID_FILES = sorted((EXAMPLES / "seed").glob("*.yaml")) + sorted((EXAMPLES / "flux").glob("*.yaml"))
INVALID_FILES = sorted((EXAMPLES / "invalid").glob("*.yaml"))


def in_namespace(path: Path, namespace: str) -> str:
    """The file's documents moved into the test's namespace."""
    docs: list[dict[str, Any]] = [d for d in yaml.safe_load_all(path.read_text()) if d]
    for doc in docs:
        doc["metadata"]["namespace"] = namespace
    return yaml.safe_dump_all(docs, sort_keys=False)


def dry_run(kubectl: Kubectl, manifest: str, *extra: str) -> CompletedProcess[str]:
    return kubectl(
        "apply", "--server-side", "--dry-run=server", "--field-manager=tide-e2e", "-f", "-", *extra,
        input=manifest, check=False,
    )  # fmt: skip


@pytest.mark.parametrize("path", VALID_FILES, ids=[f"{p.parent.name}/{p.name}" for p in VALID_FILES])
def test_example_passes_server_side_dry_run(kubectl: Kubectl, namespace: str, path: Path) -> None:
    result = dry_run(kubectl, in_namespace(path, namespace))
    assert result.returncode == 0, f"{path.name} refused by the API server:\n{result.stderr}"
    documents = [d for d in yaml.safe_load_all(path.read_text()) if d]
    assert result.stdout.count("serverside-applied") == len(documents), result.stdout


@pytest.mark.parametrize("path", INVALID_FILES, ids=[p.name for p in INVALID_FILES])
def test_invalid_spec_is_refused_with_a_clear_message(kubectl: Kubectl, namespace: str, path: Path) -> None:
    expected = path.read_text().splitlines()[0].removeprefix("# rejected: ")
    result = dry_run(kubectl, in_namespace(path, namespace))
    assert result.returncode != 0, f"{path.name} was accepted"
    assert expected in result.stderr, result.stderr


def test_the_api_server_applies_fluxs_defaults(kubectl: Kubectl, namespace: str) -> None:
    manifest = f"""
apiVersion: source.toolkit.fluxcd.io/v1
kind: GitRepository
metadata: {{name: defaults, namespace: {namespace}}}
spec: {{interval: 1m, url: "https://github.com/stefanprodan/podinfo"}}
---
apiVersion: source.toolkit.fluxcd.io/v1
kind: HelmChart
metadata: {{name: defaults, namespace: {namespace}}}
spec: {{interval: 1m, chart: podinfo, sourceRef: {{kind: HelmRepository, name: podinfo}}}}
"""
    result = dry_run(kubectl, manifest, "-o", "json")
    assert result.returncode == 0, result.stderr
    items = json.loads(result.stdout)["items"]
    repo, chart = (item["spec"] for item in items)
    assert repo["timeout"] == "60s" and repo["provider"] == "generic"
    assert chart["version"] == "*" and chart["reconcileStrategy"] == "ChartVersion"


def test_created_objects_get_status_default_short_name_and_columns(
    kubectl: Kubectl, namespace: str, tmp_path: Path
) -> None:
    seed = in_namespace(EXAMPLES / "seed" / "gitrepository.yaml", namespace)
    kubectl("apply", "--server-side", "-f", "-", input=seed)
    created = json.loads(kubectl("get", "gitrepo", "k8s-manifests", "-n", namespace, "-o", "json").stdout)
    assert created["status"] == {"observedGeneration": -1}
    assert created["spec"]["timeout"] == "60s"
    header = kubectl("get", "gitrepo", "-n", namespace).stdout.splitlines()[0].split()
    assert header == ["NAME", "URL", "AGE", "READY", "STATUS"]
    # A fresh discovery cache: the CRDs' categories may have changed since kubectl last looked.
    listed = kubectl("get", "fluxcd", "-n", namespace, f"--cache-dir={tmp_path}").stdout
    assert "gitrepository.source.toolkit.fluxcd.io/k8s-manifests" in listed


def test_helm_release_written_as_v2beta1_is_served_as_v2(kubectl: Kubectl, namespace: str) -> None:
    seed = in_namespace(EXAMPLES / "seed" / "helmrelease.yaml", namespace)
    assert "serverside-applied" in kubectl("apply", "--server-side", "-f", "-", input=seed).stdout
    as_v2 = "helmreleases.v2.helm.toolkit.fluxcd.io"
    stored = json.loads(kubectl("get", as_v2, "nginx-ingress", "-n", namespace, "-o", "json").stdout)
    assert stored["apiVersion"] == "helm.toolkit.fluxcd.io/v2"
    assert stored["spec"]["upgrade"]["remediation"] == {"remediateLastFailure": True, "retries": 3}
    assert stored["spec"]["values"]["controller"]["replicaCount"] == 3

    from tide.shared.api import HelmRelease

    release = HelmRelease.from_dict(stored)
    assert release.spec.chart is not None and release.spec.chart.spec.version == "4.x"


def test_status_built_with_the_models_is_accepted_by_the_status_subresource(
    kubectl: Kubectl, namespace: str
) -> None:
    from tide.shared.api import Artifact, Condition, GitRepository

    seed = in_namespace(EXAMPLES / "seed" / "gitrepository.yaml", namespace)
    kubectl("apply", "--server-side", "-f", "-", input=seed)
    live = json.loads(kubectl("get", "gitrepo", "k8s-manifests", "-n", namespace, "-o", "json").stdout)
    repo = GitRepository.from_dict(live)
    repo.status.observed_generation = repo.metadata.generation
    repo.status.conditions = [
        Condition(
            type="Ready",
            status="True",
            reason="Succeeded",
            message="stored artifact for revision 'main@sha1:0123'",
            last_transition_time="2026-01-01T00:00:00Z",
            observed_generation=repo.metadata.generation,
        )
    ]
    repo.status.artifact = Artifact(
        path="gitrepository/ns/k8s-manifests/0123.tar.gz",
        url="http://source-controller.flux-system.svc.cluster.local./gitrepository/ns/k8s-manifests/0123.tar.gz",
        revision="main@sha1:0123",
        digest="sha256:" + "a" * 64,
        last_update_time="2026-01-01T00:00:00Z",
        size=1234,
    )
    patched = patch_status(kubectl, namespace, "k8s-manifests", repo.status.to_wire())
    assert patched.returncode == 0, patched.stderr
    live = json.loads(kubectl("get", "gitrepo", "k8s-manifests", "-n", namespace, "-o", "json").stdout)
    stored = GitRepository.from_dict(live)
    assert stored.status.is_ready()
    assert stored.status.artifact == repo.status.artifact
    row = kubectl("get", "gitrepo", "k8s-manifests", "-n", namespace, "--no-headers").stdout
    assert "True" in row.split() and "stored artifact for revision" in row

    bad = {**repo.status.conditions[0].to_wire(), "reason": "Not valid"}
    refused = patch_status(kubectl, namespace, "k8s-manifests", {"conditions": [bad]})
    assert refused.returncode != 0 and "reason" in refused.stderr


def patch_status(
    kubectl: Kubectl, namespace: str, name: str, status: dict[str, Any]
) -> CompletedProcess[str]:
    patch = json.dumps({"status": status})
    args = ("patch", "gitrepo", name, "-n", namespace, "--subresource=status", "--type=merge", "-p", patch)
    return kubectl(*args, check=False)
