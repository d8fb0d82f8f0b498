"""A big directory of plain files built in groups (kustomize's accumulation is superlinear): the
same objects as one kustomize build, and kustomize's own answer whenever the groups could differ."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from tide.shared.kustomize import build as kbuild
from tide.shared.kustomize.build import BuildError, GeneratedResource, build, find_kustomize, partitions

PLAIN = [GeneratedResource(f"f{i}.yaml", 100) for i in range(12)]


@pytest.mark.parametrize(
    ("generated", "spec", "groups"),
    [
        (PLAIN, {}, [[f"f{i}.yaml", f"f{i + 1}.yaml", f"f{i + 2}.yaml"] for i in range(0, 12, 3)]),
        (PLAIN, {"targetNamespace": "apps", "commonMetadata": {"labels": {"a": "b"}}}, 4),
        (PLAIN[:9], {}, None),  # under PARTITION_FROM objects: one build, as Flux
        (None, {}, None),  # the directory's own kustomization
        ([*PLAIN, GeneratedResource("overlay", None)], {}, None),  # a kustomization directory
        (PLAIN, {"patches": [{"patch": "x"}]}, None),  # patches look across objects
        (PLAIN, {"images": [{"name": "a", "newTag": "1"}]}, None),
        (PLAIN, {"namePrefix": "p-"}, None),  # references to renamed objects are rewritten
        (PLAIN, {"nameSuffix": "-s"}, None),
        (PLAIN, {"components": ["c"]}, None),
        ([GeneratedResource("big.yaml", 2000), *PLAIN[:2]], {}, [["big.yaml"], ["f0.yaml", "f1.yaml"]]),
    ],
)
def test_partitions(generated: Any, spec: dict[str, Any], groups: Any) -> None:
    got = partitions(generated, spec)
    if isinstance(groups, int):
        assert got is not None and len(got) == groups
    else:
        assert got == groups


def cm(name: str, namespace: str | None = None) -> str:
    ns = f"\n  namespace: {namespace}" if namespace else ""
    return f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}{ns}\ndata:\n  k: v\n"


def binding(i: int) -> str:
    return (
        f"apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata:\n  name: rb-{i}\n"
        f"roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: r}}\n"
        f"subjects:\n- {{kind: ServiceAccount, name: default, namespace: elsewhere}}\n"
    )


def namespace(name: str) -> str:
    return f"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}\n"


def platform(root: Path, files: int = 10, per_file: int = 101) -> None:
    """ConfigMaps (some with a namespace of their own), RoleBindings, one Namespace."""
    (root / "app").mkdir(parents=True)
    for f in range(files):
        docs = [cm(f"cm-{f}-{i}", "own" if i % 7 == 0 else None) if i % 10 else binding(f * per_file + i)
                for i in range(per_file)]  # fmt: skip
        if f == 0:
            docs[0] = namespace("ns")
        (root / "app" / f"part-{f:02d}.yaml").write_text("---\n".join(docs))


def objects(root: Path, spec: dict[str, Any]) -> list[dict[str, Any]]:
    docs = asyncio.run(build(root, {"path": "./app", **spec}, binary=find_kustomize(), limit=120))
    return [d.obj for d in docs]


def key(obj: dict[str, Any]) -> str:
    return yaml.safe_dump(obj, sort_keys=True)


@pytest.mark.parametrize("spec", [{}, {"targetNamespace": "apps"}])
def test_groups_build_what_one_build_does(tmp_path: Path, spec: dict[str, Any], monkeypatch) -> None:
    platform(tmp_path / "a")
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    grouped = objects(tmp_path / "a", spec)
    assert not list((tmp_path / "a" / "app").glob(".tide-partition-*"))  # cleaned up
    monkeypatch.setattr(kbuild, "PARTITION_FROM", 10**9)
    whole = objects(tmp_path / "b", spec)
    assert len(grouped) == 10 * 101
    assert sorted(map(key, grouped)) == sorted(map(key, whole))


def test_a_duplicate_across_groups_is_kustomizes_error(tmp_path: Path) -> None:
    platform(tmp_path)
    with (tmp_path / "app" / "part-09.yaml").open("a") as f:
        f.write("---\n" + cm("cm-0-1"))
    with pytest.raises(BuildError, match="already registered id"):
        objects(tmp_path, {})


def test_a_conflict_made_by_the_namespace_transformer_is_kustomizes_error(tmp_path: Path) -> None:
    """kustomize renames a Namespace object to the target namespace: two of them conflict."""
    platform(tmp_path)
    with (tmp_path / "app" / "part-09.yaml").open("a") as f:
        f.write("---\n" + namespace("other"))
    with pytest.raises(BuildError, match="ID conflict"):
        objects(tmp_path, {"targetNamespace": "apps"})


def test_a_failing_group_gives_kustomizes_message(tmp_path: Path) -> None:
    platform(tmp_path)
    with (tmp_path / "app" / "part-05.yaml").open("a") as f:
        f.write("---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: [not, a, name]\n")
    with pytest.raises(BuildError) as err:
        objects(tmp_path, {})
    assert ".tide-partition" not in str(err.value)
