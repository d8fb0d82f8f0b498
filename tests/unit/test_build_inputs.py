"""A checkout holds what a build of spec.path can read, not the whole repository: the same objects as a
build of the whole tree, and the whole tree (with the build's own checks) whenever that is in doubt."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from test_artifact_cache import Artifacts, absolute, serve

from tide.shared.artifact.fetch import ArtifactCache, link_paths
from tide.shared.kustomize.build import BuildError, ReferenceRefused, build, build_inputs, find_kustomize


def cm(name: str) -> str:
    return f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  k: v\n"


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


MONOREPO = {f"apps/app-{i}/configmap.yaml": cm(f"app-{i}") for i in range(5)}

OVERLAY = {
    **MONOREPO,
    "base/kustomization.yaml": "resources: [cm.yaml, ../shared/common]\n",
    "base/cm.yaml": cm("base"),
    "shared/common/kustomization.yaml": "resources: [cm.yaml]\n",
    "shared/common/cm.yaml": cm("common"),
    "shared/patch.yaml": "- {op: add, path: /data/patched, value: 'yes'}\n",
    "shared/env.txt": "FROM_ENV=1\n",
    "components/label/kustomization.yaml": (
        "apiVersion: kustomize.config.k8s.io/v1alpha1\nkind: Component\n"
        "labels: [{pairs: {component: 'yes'}}]\n"
    ),
    "clusters/prod/kustomization.yaml": (
        "resources: [../../base, cm.yaml]\n"
        "patches: [{path: ../../shared/patch.yaml, target: {kind: ConfigMap, name: base}}]\n"
        "configMapGenerator: [{name: gen, envs: [../../shared/env.txt]}]\n"
    ),
    "clusters/prod/cm.yaml": cm("prod"),
    "unused/kustomization.yaml": "resources: [../../outside]\n",
}


@pytest.mark.parametrize(
    ("files", "spec", "inputs"),
    [
        (MONOREPO, {"path": "./apps/app-1"}, ["apps/app-1"]),
        (MONOREPO, {"path": "apps/app-1/"}, ["apps/app-1"]),
        (
            OVERLAY,
            {"path": "./clusters/prod", "components": ["../../components/label"]},
            ["base", "clusters/prod", "components/label", "shared/common", "shared/env.txt",
             "shared/patch.yaml"],
        ),
        # A generated kustomization: every kustomization below the path is followed.
        (
            {**OVERLAY, "apps/nested/kustomization.yaml": "resources: [../../base]\n"},
            {"path": "./apps"},
            ["apps", "base", "shared/common"],
        ),
        # A referenced directory inside one already taken is not copied twice.
        ({"a/kustomization.yaml": "resources: [b, ../a/b]\n", "a/b/kustomization.yaml": ""},
         {"path": "a"}, ["a"]),
        ({"a/kustomization.yaml": "resources: [../b]\n", "b/kustomization.yaml": "resources: [../a]\n"},
         {"path": "a"}, ["a", "b"]),
        # A remote base is fetched, not copied.
        ({"a/kustomization.yaml": "resources: ['https://github.com/x/y//z']\n"}, {"path": "a"}, ["a"]),
        # Missing references: kustomize says what it cannot find, with or without the rest.
        ({"a/kustomization.yaml": "resources: [../gone, missing.yaml]\n"}, {"path": "a"}, ["a"]),
        # The whole tree, and the build's checks, when in doubt.
        (MONOREPO, {"path": "./"}, None),
        (MONOREPO, {}, None),
        (MONOREPO, {"path": "./nowhere"}, None),
        (MONOREPO, {"path": "../.."}, None),
        ({"a/kustomization.yaml": "resources: [../../outside]\n"}, {"path": "a"}, None),
        ({"a/kustomization.yaml": "resources: [..]\n", "b.yaml": cm("b")}, {"path": "a"}, None),
        ({"a/kustomization.yaml": "resources: ['file:///etc']\n"}, {"path": "a"}, None),
        ({"a/kustomization.yaml": "resources: [/etc/passwd]\n"}, {"path": "a"}, None),
        ({"a/kustomization.yaml": "resources: [\n"}, {"path": "a"}, None),
        ({"a/kustomization.yaml": "resources: [b]\n"}, {"path": "a", "components": ["../../x"]}, None),
    ],
)
def test_build_inputs(tmp_path: Path, files: dict[str, str], spec: dict[str, Any], inputs: Any) -> None:
    assert build_inputs(write(tmp_path, files), spec) == inputs


def test_a_symlink_on_the_way_takes_the_whole_tree(tmp_path: Path) -> None:
    write(tmp_path, MONOREPO)
    (tmp_path / "apps/app-1/link.yaml").symlink_to("../app-2/configmap.yaml")
    assert build_inputs(tmp_path, {"path": "apps/app-1"}) is None
    (tmp_path / "apps/app-1/link.yaml").unlink()
    (tmp_path / "elsewhere").symlink_to("apps")
    assert build_inputs(tmp_path, {"path": "elsewhere/app-1"}) is None
    write(tmp_path, {"x/kustomization.yaml": "resources: [../elsewhere/app-2]\n"})
    assert build_inputs(tmp_path, {"path": "x"}) is None
    # A symlink nobody reads does not matter.
    assert build_inputs(tmp_path, {"path": "apps/app-1"}) == ["apps/app-1"]


async def _build_both(tmp_path: Path, files: dict[str, str], spec: dict[str, Any]) -> tuple[Any, Any]:
    whole = write(tmp_path / "whole", files)
    inputs = build_inputs(whole, spec)
    assert inputs is not None
    part = tmp_path / "part"
    part.mkdir()
    link_paths(whole, part, inputs)
    out = []
    for root in (whole, part):
        docs = await build(root, spec, binary=find_kustomize(), limit=120)
        out.append(sorted((d.text or "") for d in docs))
    return out[0], out[1]


@pytest.mark.parametrize(
    "spec",
    [
        {"path": "./clusters/prod", "components": ["../../components/label"]},
        {"path": "./clusters/prod", "targetNamespace": "prod", "namePrefix": "p-"},
        {"path": "./apps"},
        {"path": "./apps/app-3"},
    ],
)
def test_the_selected_paths_build_what_the_whole_tree_does(tmp_path: Path, spec: dict[str, Any]) -> None:
    files = {**OVERLAY, "apps/nested/kustomization.yaml": "resources: [../../base]\n"}
    whole, part = asyncio.run(_build_both(tmp_path, files, spec))
    assert whole == part
    assert whole


def test_a_refused_reference_is_refused_as_before(tmp_path: Path) -> None:
    # Taken whole, so the build's own check names the reference.
    root = write(tmp_path, {"a/kustomization.yaml": "resources: [../../outside]\n"})
    assert build_inputs(root, {"path": "a"}) is None
    with pytest.raises(ReferenceRefused, match="outside the source artifact root"):
        asyncio.run(build(root, {"path": "a"}, binary=find_kustomize(), limit=60))
    root = write(tmp_path / "b", {"a/kustomization.yaml": "resources: [../gone]\n"})
    with pytest.raises(BuildError):
        asyncio.run(build(root, {"path": "a"}, binary=find_kustomize(), limit=60))


async def test_a_checkout_copies_only_the_selected_paths(tmp_path: Path) -> None:
    artifacts = Artifacts()
    server = await serve(artifacts)
    cache = ArtifactCache(tmp_path / "cache")
    try:
        artifact = absolute(server, artifacts.add("a", OVERLAY))
        copy = await cache.checkout(artifact, lambda tree: build_inputs(tree, {"path": "clusters/prod"}))
        got = sorted(str(p.relative_to(copy)) for p in copy.rglob("*") if p.is_file())
        assert got == [
            "base/cm.yaml",
            "base/kustomization.yaml",
            "clusters/prod/cm.yaml",
            "clusters/prod/kustomization.yaml",
            "shared/common/cm.yaml",
            "shared/common/kustomization.yaml",
            "shared/env.txt",
            "shared/patch.yaml",
        ]
        whole = await cache.checkout(artifact, lambda tree: None)
        assert len([p for p in whole.rglob("*") if p.is_file()]) == len(OVERLAY)
        assert artifacts.requests == 1
    finally:
        await cache.stop()
        await server.close()
