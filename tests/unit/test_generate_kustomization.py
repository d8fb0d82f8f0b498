from pathlib import Path

import pytest
import yaml

from tide.shared.kustomize.build import (
    BuildError,
    check_references,
    check_symlinks,
    generate_resources,
    resolve_path,
    split_documents,
    write_kustomization,
)

CM = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n"


def test_generated_resources_are_yaml_files_and_kustomize_dirs(tmp_path: Path) -> None:
    (tmp_path / "b.yaml").write_text(CM.format(name="b"))
    (tmp_path / "a.yml").write_text(CM.format(name="a") + "---\n" + CM.format(name="a2"))
    (tmp_path / "README.md").write_text("# not yaml")
    (tmp_path / "plain" / "deep").mkdir(parents=True)
    (tmp_path / "plain" / "deep" / "c.yaml").write_text(CM.format(name="c"))
    (tmp_path / "overlay").mkdir()
    (tmp_path / "overlay" / "kustomization.yaml").write_text("resources: [x.yaml]\n")
    (tmp_path / "overlay" / "x.yaml").write_text(CM.format(name="x"))
    generated = generate_resources(tmp_path)
    assert [r.path for r in generated] == ["a.yml", "b.yaml", "overlay", "plain/deep/c.yaml"]
    assert [r.objects for r in generated] == [2, 1, None, 1]


def test_non_kubernetes_yaml_is_a_build_error(tmp_path: Path) -> None:
    (tmp_path / "values.yaml").write_text("replicas: 3\n")
    with pytest.raises(BuildError, match=r"values\.yaml"):
        generate_resources(tmp_path)


def test_write_generates_when_absent(tmp_path: Path) -> None:
    (tmp_path / "cm.yaml").write_text(CM.format(name="x"))
    kfile = write_kustomization(tmp_path, {"targetNamespace": "apps"})
    kus = yaml.safe_load(kfile.read_text())
    assert kus["resources"] == ["cm.yaml"]
    assert kus["namespace"] == "apps"
    assert kus["kind"] == "Kustomization"


def test_write_keeps_existing_file(tmp_path: Path) -> None:
    (tmp_path / "kustomization.yml").write_text("resources: [cm.yaml]\nnamespace: old\n")
    kfile = write_kustomization(tmp_path, {})
    assert kfile.name == "kustomization.yml"
    assert yaml.safe_load(kfile.read_text())["namespace"] == "old"


def test_spec_path_cannot_escape(tmp_path: Path) -> None:
    (tmp_path / "apps").mkdir()
    assert resolve_path(tmp_path, "./apps") == (tmp_path / "apps").resolve()
    assert resolve_path(tmp_path, None) == tmp_path.resolve()
    with pytest.raises(BuildError, match="outside"):
        resolve_path(tmp_path, "../../etc")
    with pytest.raises(BuildError, match="not found"):
        resolve_path(tmp_path, "./missing")


def test_reference_outside_root_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "artifact"
    (root / "app").mkdir(parents=True)
    (root / "app" / "kustomization.yaml").write_text("resources:\n- ../../../../etc/passwd\n")
    with pytest.raises(BuildError, match="outside the source artifact root"):
        check_references(root, root / "app", no_remote_bases=False)


def test_generator_files_outside_root_are_refused(tmp_path: Path) -> None:
    (tmp_path / "kustomization.yaml").write_text(
        "configMapGenerator:\n- name: x\n  files:\n  - key=../secret.txt\n"
    )
    with pytest.raises(BuildError, match="configMapGenerator"):
        check_references(tmp_path, tmp_path, no_remote_bases=False)


def test_absolute_paths_are_refused(tmp_path: Path) -> None:
    (tmp_path / "kustomization.yaml").write_text("resources:\n- /etc/passwd\n")
    with pytest.raises(BuildError, match="absolute"):
        check_references(tmp_path, tmp_path, no_remote_bases=False)


def test_references_are_followed_into_bases(tmp_path: Path) -> None:
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "kustomization.yaml").write_text("patches:\n- path: ../../outside.yaml\n")
    (tmp_path / "overlay").mkdir()
    (tmp_path / "overlay" / "kustomization.yaml").write_text("resources:\n- ../base\n")
    with pytest.raises(BuildError, match=r"base/kustomization\.yaml"):
        check_references(tmp_path, tmp_path / "overlay", no_remote_bases=False)


def test_remote_bases_refused_only_with_flag(tmp_path: Path) -> None:
    (tmp_path / "kustomization.yaml").write_text(
        "resources:\n- https://github.com/stefanprodan/podinfo//kustomize?ref=6.0.0\n"
    )
    check_references(tmp_path, tmp_path, no_remote_bases=False)
    with pytest.raises(BuildError, match="remote"):
        check_references(tmp_path, tmp_path, no_remote_bases=True)


def test_symlink_out_of_tree_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "artifact"
    root.mkdir()
    (root / "inside.yaml").write_text(CM.format(name="x"))
    (root / "ok.yaml").symlink_to(root / "inside.yaml")
    check_symlinks(root)
    (root / "passwd.yaml").symlink_to("/etc/passwd")
    with pytest.raises(BuildError, match=r"passwd\.yaml"):
        check_symlinks(root)


def test_split_documents_keeps_text() -> None:
    out = CM.format(name="a") + "---\n" + CM.format(name="b")
    docs = split_documents(out)
    assert [d.obj["metadata"]["name"] for d in docs] == ["a", "b"]
    assert docs[1].text == CM.format(name="b")
