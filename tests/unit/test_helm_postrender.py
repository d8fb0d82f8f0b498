"""Kustomize post-renderers of a HelmRelease: the spec as Flux reads it (deprecated fields mapped),
the digests Flux records, and the real kustomize run with the kustomize controller's limits."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tide.controllers.helm.postrender import (
    PostRenderFailed,
    PostRenderSpec,
    ReleaseStorageImpersonation,
    common_metadata_digest,
    kustomization,
    kustomizations,
    post_render,
    post_renderers_digest,
)
from tide.shared.api.helm import HelmReleaseSpec, KustomizePostRenderer, PostRenderer
from tide.shared.api.meta import CommonMetadata
from tide.shared.kustomize.build import find_kustomize


def renderers(raw: list) -> list[PostRenderer]:
    return [PostRenderer.model_validate(r) for r in raw]


# Vectors: sha256 of Go's json.Encoder over Flux's []v2.PostRenderer and *v2.CommonMetadata types,
# each decoded from the same JSON (so omitempty and field order are Go's).
@pytest.mark.parametrize(
    ("raw", "digest"),
    [
        ([], "sha256:37517e5f3dc66819f61f5a7bb8ace1921282415f10551d2defa5c3eb0985b570"),
        ([{}], "sha256:501de836b88be0a82b9af264bee8fa768a66abb5ac670b802bf7f696171b0e96"),
        (
            [{"kustomize": {"images": [{"name": "nginx", "newTag": "1.27", "newName": "mirror/nginx"}]}}],
            "sha256:ee70fa5bb9992c5789b7c91fbc4887d6ff4062b027477bdba7b549d312a0c1ea",
        ),
        (
            [
                {
                    "kustomize": {
                        "patches": [
                            {
                                "patch": "- op: add\n  path: /metadata/labels/x\n  value: <y&z>",
                                "target": {
                                    "kind": "Deployment",
                                    "name": "app",
                                    "labelSelector": "a=b",
                                    "group": "apps",
                                },
                            }
                        ]
                    }
                },
                {
                    "kustomize": {
                        "patches": [
                            {"patch": "apiVersion: v1\nkind: Service\nmetadata:\n  name: s\n", "target": {}}
                        ]
                    }
                },
            ],
            "sha256:a8de2b817bac042ceaa4f4ecd8a084d44a46aa2c657059dcd7a0bdaee731663c",
        ),
    ],
)
def test_post_renderers_digest_is_fluxs(raw, digest) -> None:
    assert post_renderers_digest(renderers(raw)) == digest


def test_unset_sections_have_no_digest() -> None:
    assert post_renderers_digest(None) == ""
    assert common_metadata_digest(None) == ""


@pytest.mark.parametrize(
    ("raw", "digest"),
    [
        ({}, "sha256:ca3d163bab055381827226140568f3bef7eaac187cebd76878e0b63e9e442356"),
        ({"labels": {}}, "sha256:ca3d163bab055381827226140568f3bef7eaac187cebd76878e0b63e9e442356"),
        (
            {"labels": {"b": "1", "a": "2"}, "annotations": {"n": "x"}},
            "sha256:75d4b014db27a86c3f92996d6a04276d3ecfee7fe51000f7815b8330f714cef2",
        ),
    ],
)
def test_common_metadata_digest_is_fluxs(raw, digest) -> None:
    assert common_metadata_digest(CommonMetadata.model_validate(raw)) == digest


SMP = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "app"}, "spec": {"replicas": 3}}
JSON6902 = {
    "target": {"kind": "Service", "name": "app"},
    "patch": [
        {"op": "add", "path": "/metadata/annotations", "value": {"x": "1"}},
        {"op": "remove", "path": "/a"},
    ],
}


def test_deprecated_patches_are_mapped_in_kustomizes_order() -> None:
    """v2beta1/v2beta2's patchesStrategicMerge and patchesJson6902 become patches: strategic merge
    first, then patches, then JSON6902 (kustomize's transformer order for one kustomization)."""
    k = KustomizePostRenderer.model_validate(
        {
            "patches": [{"patch": "a: b", "target": {"kind": "ConfigMap"}}],
            "patchesStrategicMerge": [SMP],
            "patchesJson6902": [JSON6902],
            "images": [{"name": "nginx", "newTag": "1"}],
        }
    )
    patches = k.all_patches()
    assert json.loads(patches[0].patch) == SMP and patches[0].target is None
    assert patches[1].patch == "a: b" and patches[1].target.kind == "ConfigMap"
    assert json.loads(patches[2].patch) == JSON6902["patch"]
    assert (patches[2].target.kind, patches[2].target.name) == ("Service", "app")
    assert kustomization(k) == {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": ["helm-output.yaml"],
        "patches": [
            {"patch": patches[0].patch},
            {"patch": "a: b", "target": {"kind": "ConfigMap"}},
            {"patch": patches[2].patch, "target": {"kind": "Service", "name": "app"}},
        ],
        "images": [{"name": "nginx", "newTag": "1"}],
    }


def test_a_v2beta2_release_with_deprecated_patches_is_read_as_v2() -> None:
    spec = HelmReleaseSpec.model_validate(
        {
            "interval": "5m",
            "chartRef": {"kind": "OCIRepository", "name": "app"},
            "postRenderers": [{"kustomize": {"patchesStrategicMerge": [SMP]}}, {}],
        }
    )
    assert [len(k.get("patches", [])) for k in kustomizations(spec.post_renderers)] == [1]
    mapped = renderers([{"kustomize": {"patches": [{"patch": json.dumps(SMP)}]}}, {}])
    assert post_renderers_digest(spec.post_renderers) == post_renderers_digest(mapped)


# --- the real kustomize --------------------------------------------------------------------------

MANIFESTS = """---
# Source: app/templates/deployment.yaml
apiVersion: apps/v1
kind: Deployment
metadata:
  name: app
  labels: {app: app}
  annotations: {postrenderer.helm.sh/postrender-filename: app/templates/deployment.yaml}
spec:
  replicas: 1
  selector: {matchLabels: {app: app}}
  template:
    metadata: {labels: {app: app}}
    spec:
      containers: [{name: app, image: "nginx:1.25"}]
---
apiVersion: v1
kind: Service
metadata: {name: app, labels: {app: app}}
spec:
  ports: [{port: 80}]
"""


def spec_with(raw: list, **kw) -> PostRenderSpec:
    return PostRenderSpec(
        "hr", "flux", kustomize=kustomizations(renderers(raw)), kustomize_binary=find_kustomize(), **kw
    )


def by_kind(text: str) -> dict[str, dict]:
    return {d["kind"]: d for d in yaml.safe_load_all(text) if d}


def test_kustomize_post_renderers_run_in_order_then_metadata() -> None:
    raw = [
        {
            "kustomize": {
                "patchesStrategicMerge": [SMP],
                "patches": [
                    {
                        "patch": '[{"op": "add", "path": "/metadata/labels/tier", "value": "web"}]',
                        "target": {"kind": "Service"},
                    }
                ],
                "images": [{"name": "nginx", "newName": "mirror/nginx", "newTag": "1.27"}],
            }
        },
        # The second sees the first's output: the label it matches was set by the first.
        {
            "kustomize": {
                "patches": [
                    {
                        "patch": "- {op: add, path: /metadata/annotations, value: {second: 'yes'}}",
                        "target": {"labelSelector": "tier=web"},
                    }
                ]
            }
        },
    ]
    out = by_kind(post_render(MANIFESTS, spec_with(raw, labels={"tier": "common"})))
    deployment, service = out["Deployment"], out["Service"]
    assert deployment["spec"]["replicas"] == 3
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == "mirror/nginx:1.27"
    # Helm's file annotation survives, so Helm can split the output back into its templates.
    assert "postrenderer.helm.sh/postrender-filename" in deployment["metadata"]["annotations"]
    assert service["metadata"]["annotations"] == {"second": "yes"}
    # commonMetadata comes after the post-renderers (it overrides their label), origin labels last.
    assert service["metadata"]["labels"] == {
        "app": "app",
        "tier": "common",
        "helm.toolkit.fluxcd.io/name": "hr",
        "helm.toolkit.fluxcd.io/namespace": "flux",
    }


def test_a_patch_that_does_not_apply_fails_the_post_render() -> None:
    raw = [
        {
            "kustomize": {
                "patches": [{"patch": "[{op: remove, path: /spec/nothing}]", "target": {"kind": "Service"}}]
            }
        }
    ]
    with pytest.raises(PostRenderFailed, match="kustomize post-renderer"):
        post_render(MANIFESTS, spec_with(raw))


def test_a_patch_is_never_read_as_a_file_path() -> None:
    """kustomize reads a patch from a file when given a path; Tide only passes inline patches, so a
    tenant's path-looking patch is a (bad) patch, never the content of a controller file."""
    raw = [{"kustomize": {"patches": [{"patch": "/etc/hostname"}]}}]
    with pytest.raises(PostRenderFailed) as err:
        post_render(MANIFESTS, spec_with(raw))
    with open("/etc/hostname") as f:
        assert f.read().strip() not in str(err.value)


def test_rendered_kustomizations_are_objects_not_instructions() -> None:
    """A chart that renders a kustomization naming a remote base and a host file gets them applied as
    an object's data: kustomize is given only the rendered file and Tide's own kustomization."""
    hostile = MANIFESTS + (
        "---\napiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nmetadata: {name: k}\n"
        "resources: ['https://github.com/example/repo//base', /etc/passwd]\n"
    )
    raw = [{"kustomize": {"images": [{"name": "nginx", "newTag": "1.27"}]}}]
    out = by_kind(post_render(hostile, spec_with(raw)))
    assert out["Kustomization"]["resources"] == ["https://github.com/example/repo//base", "/etc/passwd"]


ALIAS_BOMB = Path(__file__).resolve().parent.parent / "fixtures" / "hostile" / "alias-bomb.yaml"


def test_a_chart_rendering_an_alias_bomb_is_stopped_by_the_memory_limit() -> None:
    raw = [{"kustomize": {"images": [{"name": "nginx", "newTag": "1.27"}]}}]
    bomb = MANIFESTS + "---\n" + ALIAS_BOMB.read_text()
    with pytest.raises(PostRenderFailed, match="memory limit of 256 MiB"):
        post_render(bomb, spec_with(raw, memory_limit=256 << 20))


def test_a_patch_cannot_rename_a_secret_into_release_storage() -> None:
    secret = "---\napiVersion: v1\nkind: Secret\nmetadata: {name: creds}\n"
    patch = '[{"op": "replace", "path": "/metadata/name", "value": "sh.helm.release.v1.other.v9"}]'
    raw = [{"kustomize": {"patches": [{"patch": patch, "target": {"kind": "Secret"}}]}}]
    with pytest.raises(ReleaseStorageImpersonation):
        post_render(MANIFESTS + secret, spec_with(raw))


def test_post_render_spec_round_trips() -> None:
    spec = spec_with([{"kustomize": {"images": [{"name": "a", "newTag": "1"}]}}], labels={"a": "b"})
    assert PostRenderSpec.from_json(spec.to_json()) == spec
