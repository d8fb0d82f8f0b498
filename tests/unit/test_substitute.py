import pytest

from tide.shared.kustomize.substitute import (
    SubstitutionError,
    substitute_objects,
    substitute_text,
    validate_names,
)

VARS = {"app": "podinfo", "replicas": "3", "empty": "", "region": "eu-west-1"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("name: ${app}", "name: podinfo"),
        ("x: ${missing:=fallback}", "x: fallback"),
        ("x: ${empty:=fallback}", "x: fallback"),
        ("x: ${empty=fallback}", "x: "),
        ("x: ${app:=fallback}", "x: podinfo"),
        ("x: ${missing:-dash}", "x: dash"),
        ("x: ${app:0:3}", "x: pod"),
        ("x: ${app:3}", "x: info"),
        ("x: ${region/-/_}", "x: eu_west-1"),
        ("x: ${region//-/_}", "x: eu_west_1"),
        ("x: ${app^^}", "x: PODINFO"),
        ("x: ${#app}", "x: 7"),
        ("x: $${app}", "x: ${app}"),
        ("x: $app", "x: $app"),
        ("x: ${app}-${region}", "x: podinfo-eu-west-1"),
        ("no vars here", "no vars here"),
    ],
)
def test_expressions(text: str, expected: str) -> None:
    assert substitute_text(text, VARS) == expected


def test_strict_mode_rejects_undefined() -> None:
    with pytest.raises(SubstitutionError, match='variable not set \\(strict mode\\): "nope"'):
        substitute_text("x: ${nope}", VARS, strict=True)


def test_non_strict_mode_uses_empty() -> None:
    assert substitute_text("x: ${nope}", VARS, strict=False) == "x: "


def test_names_must_match_flux_regex() -> None:
    validate_names({"ok_1": "", "_x": ""})
    with pytest.raises(SubstitutionError, match="not a valid variable name"):
        validate_names({"1bad": ""})
    with pytest.raises(SubstitutionError):
        validate_names({"has-dash": ""})


def deployment(**meta: object) -> dict:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "${app}", "namespace": "default", **meta},
        "spec": {
            "replicas": "${replicas}",
            "template": {"spec": {"containers": [{"image": "x:${tag:=1.0}"}]}},
        },
    }


def test_objects_are_substituted_through_yaml_so_numbers_become_numbers() -> None:
    [out] = substitute_objects([deployment()], VARS)
    assert out["metadata"]["name"] == "podinfo"
    assert out["spec"]["replicas"] == 3
    assert out["spec"]["template"]["spec"]["containers"][0]["image"] == "x:1.0"


def test_disabled_annotation_or_label_opts_out() -> None:
    obj = deployment(annotations={"kustomize.toolkit.fluxcd.io/substitute": "disabled"})
    assert substitute_objects([obj], VARS) == [obj]
    obj = deployment(labels={"kustomize.toolkit.fluxcd.io/substitute": "Disabled"})
    assert substitute_objects([obj], VARS)[0]["metadata"]["name"] == "${app}"


def test_values_with_newlines_cannot_add_yaml_lines() -> None:
    obj = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"k": "${v}"}}
    [out] = substitute_objects([obj], {"v": "a\nevil"})
    assert out["data"] == {"k": "aevil"}


def test_value_that_breaks_yaml_is_a_clear_error() -> None:
    obj = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"k": "${v}"}}
    # quoted in the dump? PyYAML emits ${v} plain, so a leading '[' opens a flow sequence.
    with pytest.raises(SubstitutionError, match="ConfigMap/c"):
        substitute_objects([obj], {"v": "[unclosed"})


def test_given_text_is_the_one_substituted() -> None:
    text = 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\ndata:\n  k: "${v}"\n  n: "${n}"\n'
    obj = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "c"},
        "data": {"k": "${v}", "n": "${n}"},
    }
    [out] = substitute_objects([obj], {"v": "x: y", "n": "42"}, texts=[text])
    assert out["data"] == {"k": "x: y", "n": "42"}
