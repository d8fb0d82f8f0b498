from tide.shared.kustomize.build import add_components, apply_common_metadata, merge_overrides


def test_target_namespace_prefix_suffix() -> None:
    out = merge_overrides(
        {"resources": ["a.yaml"], "namespace": "old"},
        {"targetNamespace": "apps", "namePrefix": "p-", "nameSuffix": "-s"},
    )
    assert out["namespace"] == "apps"
    assert out["namePrefix"] == "p-"
    assert out["nameSuffix"] == "-s"
    assert out["resources"] == ["a.yaml"]


def test_patches_are_appended_with_targets() -> None:
    out = merge_overrides(
        {"patches": [{"path": "p.yaml"}]},
        {
            "patches": [
                {
                    "patch": "- op: add\n  path: /x\n  value: 1",
                    "target": {"kind": "Deployment", "name": "web"},
                },
                {"patch": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n"},
            ]
        },
    )
    assert out["patches"] == [
        {"path": "p.yaml"},
        {"patch": "- op: add\n  path: /x\n  value: 1", "target": {"kind": "Deployment", "name": "web"}},
        {"patch": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n"},
    ]


def test_images_replace_same_name_else_append() -> None:
    out = merge_overrides(
        {"images": [{"name": "nginx", "newTag": "1.0"}]},
        {"images": [{"name": "nginx", "newTag": "2.0"}, {"name": "redis", "digest": "sha256:abc"}]},
    )
    assert out["images"] == [{"name": "nginx", "newTag": "2.0"}, {"name": "redis", "digest": "sha256:abc"}]


def test_no_overrides_leave_the_file_alone() -> None:
    kus = {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization", "resources": ["a"]}
    assert merge_overrides(kus, {}) == kus


def test_components_and_ignore_missing(tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "comp").mkdir()
    kus: dict = {"components": ["../existing"]}
    add_components(kus, tmp_path, ["comp", "missing"], ignore_missing=True)
    assert kus["components"] == ["../existing", "comp"]
    kus = {}
    add_components(kus, tmp_path, ["comp", "missing"], ignore_missing=False)
    assert kus["components"] == ["comp", "missing"]


def test_common_metadata_on_every_object() -> None:
    objs = [{"metadata": {"name": "a", "labels": {"x": "1", "team": "old"}}}, {"metadata": {"name": "b"}}]
    apply_common_metadata(objs, {"labels": {"team": "core"}, "annotations": {"owner": "me"}})
    assert objs[0]["metadata"]["labels"] == {"x": "1", "team": "core"}
    assert objs[1]["metadata"]["annotations"] == {"owner": "me"}
