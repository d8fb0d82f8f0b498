"""HelmReleases whose charts come from a GitRepository path, an OCIRepository `chartRef` and an
ExternalArtifact `chartRef` (made by an ArtifactGenerator), each with a kustomize post-renderer
run by the real kustomize; the patched objects are read back live. A post-renderer change and a
new OCI digest each upgrade. Real Helm, git server, docker-registry and control plane."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from e2e.fixtures.helm_repo import helm, write_chart
from e2e.fixtures.kustomize import git_source
from e2e.fixtures.source import apply, condition, get, ocirepository, request_reconcile, wait_for
from e2e.test_helm_release import HELM_LAYER, HR, helm_release, wait_released
from e2e.test_helm_release import helm_controllers as helm_controllers  # the fixture

pytestmark = pytest.mark.e2e

EA_KIND = "externalartifacts.source.toolkit.fluxcd.io"
TEMPLATES = {
    "cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-cm\n"
    "data:\n  color: {{ .Values.color | quote }}\n",
    # No replicas: Ready at once, and an image for the images override to change.
    "deployment.yaml": "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {{ .Release.Name }}\n"
    "spec:\n  replicas: 0\n  selector: {matchLabels: {app: {{ .Release.Name }}}}\n  template:\n"
    "    metadata: {labels: {app: {{ .Release.Name }}}}\n"
    "    spec: {containers: [{name: app, image: 'nginx:1.25'}]}\n",
}


def chart_files(color: str) -> dict[str, str]:
    """The chart as files of a Git repository, under charts/app."""
    files = {
        "charts/app/Chart.yaml": "apiVersion: v2\nname: app\nversion: 1.0.0\n",
        "charts/app/values.yaml": f"color: {color}\n",
    }
    files.update({f"charts/app/templates/{k}": v for k, v in TEMPLATES.items()})
    return files


def push_chart(home: Path, registry: Any, namespace: str, color: str) -> None:
    """`helm package` and `helm push` version 1.0.0 (each color a new digest for the same tag)."""
    src = write_chart(home / f"src-{color}", "app", "1.0.0", values=f"color: {color}\n", templates=TEMPLATES)
    helm("package", str(src), "--destination", str(home / color), home=home)
    archive = home / color / "app-1.0.0.tgz"
    helm("push", str(archive), f"oci://{registry.host}/{namespace}", "--plain-http", home=home)


def chart_ref(name: str, kind: str, ref: str, post_renderers: list[dict[str, Any]]) -> dict[str, Any]:
    release = helm_release(name, chartRef={"kind": kind, "name": ref}, postRenderers=post_renderers)
    del release["spec"]["chart"]
    return release


def patch_cm(name: str, value: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"patched": value}}


def message(obj: dict[str, Any]) -> str:
    return str((condition(obj, "Ready") or {}).get("message", ""))


def live_cm(kubectl: Any, namespace: str, name: str) -> dict[str, str]:
    return dict(get(kubectl, namespace, name, "configmap").get("data") or {})


def test_charts_from_git_oci_and_external_artifact_with_post_renderers(  # type: ignore[no-untyped-def]
    git_server, oci_registry, helm_controllers, kubectl, namespace, tmp_path
):
    repo = git_server.create_repo(f"charts-{namespace}", chart_files("blue"))
    push_chart(tmp_path, oci_registry.plain, namespace, "red")
    # A v2beta2 HelmRelease with the deprecated patchesStrategicMerge, read as v2's patches.
    from_git = helm_release(
        "git",
        chart={"spec": {"chart": "./charts/app", "sourceRef": {"kind": "GitRepository", "name": "repo"}}},
        postRenderers=[
            {
                "kustomize": {
                    "patchesStrategicMerge": [patch_cm("git-cm", "smp")],
                    "images": [{"name": "nginx", "newTag": "1.27"}],
                }
            }
        ],
    )
    from_git["apiVersion"] = "helm.toolkit.fluxcd.io/v2beta2"
    json6902 = [{"op": "add", "path": "/data/patched", "value": "json6902"}]
    from_oci = chart_ref(
        "oci",
        "OCIRepository",
        "app-oci",
        [{"kustomize": {"patches": [{"patch": json.dumps(json6902), "target": {"kind": "ConfigMap"}}]}}],
    )
    from_ea = chart_ref(
        "ea",
        "ExternalArtifact",
        "app-chart",
        [{"kustomize": {"patches": [{"patch": yaml.safe_dump(patch_cm("ea-cm", "ea"))}]}}],
    )
    # A patch that does not apply: the install fails with kustomize's own message.
    broken = chart_ref(
        "broken",
        "OCIRepository",
        "app-oci",
        [
            {
                "kustomize": {
                    "patches": [
                        {"patch": '[{"op": "remove", "path": "/data/none"}]', "target": {"kind": "ConfigMap"}}
                    ]
                }
            }
        ],
    )
    generator = {
        "apiVersion": "source.extensions.fluxcd.io/v1beta1",
        "kind": "ArtifactGenerator",
        "metadata": {"name": "charts"},
        "spec": {
            "sources": [{"alias": "repo", "kind": "GitRepository", "name": "repo"}],
            "artifacts": [
                {"name": "app-chart", "copy": [{"from": "@repo/charts/app/**", "to": "@artifact/"}]}
            ],
        },
    }
    helm_controllers()
    try:
        apply(
            kubectl,
            namespace,
            git_source("repo", repo.public_http_url, interval="1h"),
            ocirepository(
                "app-oci",
                oci_registry.plain.url(f"{namespace}/app"),
                {"tag": "1.0.0"},
                interval="1h",
                layerSelector={"mediaType": HELM_LAYER, "operation": "copy"},
            ),
            generator,
            from_git,
            from_oci,
            from_ea,
            broken,
        )
        git = wait_released(kubectl, namespace, "git", 1)
        oci = wait_released(kubectl, namespace, "oci", 1)
        ea = wait_released(kubectl, namespace, "ea", 1)

        # Each post-renderer's patch is in the live object, under Flux's origin labels.
        assert live_cm(kubectl, namespace, "git-cm") == {"color": "blue", "patched": "smp"}
        deployment = get(kubectl, namespace, "git", "deployment")
        assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.27"
        assert live_cm(kubectl, namespace, "oci-cm") == {"color": "red", "patched": "json6902"}
        assert live_cm(kubectl, namespace, "ea-cm") == {"color": "blue", "patched": "ea"}
        labels = get(kubectl, namespace, "ea-cm", "configmap")["metadata"]["labels"]
        assert labels["helm.toolkit.fluxcd.io/name"] == "ea"
        assert git["status"]["helmChart"] == f"{namespace}/{namespace}-git"
        assert all(hr["status"]["observedPostRenderersDigest"].startswith("sha256:") for hr in (git, oci, ea))

        # An OCIRepository or ExternalArtifact chart is released as <version>+<digest[:12]>.
        oci_revision = get(kubectl, namespace, "app-oci", "ocirepository")["status"]["artifact"]["revision"]
        assert oci["status"]["history"][0]["chartVersion"] == f"1.0.0+{oci_revision.rsplit(':', 1)[-1][:12]}"
        ea_revision = get(kubectl, namespace, "app-chart", EA_KIND)["status"]["artifact"]["revision"]
        assert ea["status"]["history"][0]["chartVersion"] == f"1.0.0+{ea_revision.rsplit(':', 1)[-1][:12]}"
        assert ea["status"]["lastAttemptedRevisionDigest"] == ea_revision  # `latest@<digest>`, as Flux

        failed = wait_for(kubectl, namespace, "broken", lambda o: "kustomize" in message(o), 60, "failed", HR)
        assert "kustomize post-renderer: kustomize build failed: error in remove" in message(failed)
        assert condition(failed, "Ready")["status"] == "False"  # type: ignore[index]
        assert not get(kubectl, namespace, "broken-cm", "configmap")

        # A post-renderer change upgrades; so does a new digest behind the same OCI tag.
        digest = git["status"]["observedPostRenderersDigest"]
        renderers = [{"kustomize": {"patches": [{"patch": yaml.safe_dump(patch_cm("git-cm", "changed"))}]}}]
        kubectl(
            "patch",
            HR,
            "git",
            "-n",
            namespace,
            "--type=merge",
            "-p",
            json.dumps({"spec": {"postRenderers": renderers}}),
        )
        push_chart(tmp_path, oci_registry.plain, namespace, "green")
        request_reconcile(kubectl, namespace, "app-oci", kind="ocirepository")
        git = wait_released(kubectl, namespace, "git", 2)
        oci = wait_released(kubectl, namespace, "oci", 2)
        assert live_cm(kubectl, namespace, "git-cm") == {"color": "blue", "patched": "changed"}
        assert git["status"]["observedPostRenderersDigest"] != digest
        assert live_cm(kubectl, namespace, "oci-cm") == {"color": "green", "patched": "json6902"}
        new_revision = get(kubectl, namespace, "app-oci", "ocirepository")["status"]["artifact"]["revision"]
        assert new_revision != oci_revision
        assert oci["status"]["history"][0]["chartVersion"] == f"1.0.0+{new_revision.rsplit(':', 1)[-1][:12]}"
    finally:
        kubectl("delete", HR, "--all", "-n", namespace, "--timeout=90s", check=False)
        kubectl("delete", "artifactgenerators.source.extensions.fluxcd.io", "--all", "-n", namespace,
                "--timeout=60s", check=False)  # fmt: skip
