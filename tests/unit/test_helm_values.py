"""HelmRelease values: valuesFrom merge order, targetPath, optional, and Flux's config digest."""

from __future__ import annotations

import pytest

from tide.controllers.helm.go_encoding import go_float
from tide.controllers.helm.values import (
    ValuesDataInvalid,
    ValuesReferenceNotFound,
    compose_values,
    config_digest,
    values_yaml,
)
from tide.shared.api.helm import ValuesReference

EMPTY = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


# fluxcd/pkg chartutil TestDigestValues: the digests Flux records as configDigest.
@pytest.mark.parametrize(
    ("values", "digest"),
    [
        ({}, EMPTY),
        (None, EMPTY),
        (
            {
                "replicas": 3,
                "image": {"tag": "latest", "repository": "nginx"},
                "ports": [{"protocol": "TCP", "port": 8080}, {"port": 9090, "protocol": "UDP"}],
            },
            "sha256:fcdc2b0de1581a3633ada4afee3f918f6eaa5b5ab38c3fef03d5b48d3f85d9f6",
        ),
        (
            {
                "image": {"repository": "nginx", "tag": "latest"},
                "ports": [{"port": 8080, "protocol": "TCP"}, {"port": 9090, "protocol": "UDP"}],
                "replicas": 3,
            },
            "sha256:fcdc2b0de1581a3633ada4afee3f918f6eaa5b5ab38c3fef03d5b48d3f85d9f6",
        ),
        (
            {
                "replicas": 3,
                "test": {
                    "632bd80235a05f4192aefade": "value1",
                    "632bd80ddf416cf32fd50679": "value2",
                    "632bd817c559818a52307da2": "value3",
                    "632bd82398e71231a98004b6": "value4",
                },
            },
            "sha256:8a980fcbeadd6f05818f07e8aec14070c22250ca3d96af1fcd5f93b3e85b4d70",
        ),
        (
            {
                "test": {
                    "632bd82398e71231a98004b6": "value4",
                    "632bd817c559818a52307da2": "value3",
                    "632bd80ddf416cf32fd50679": "value2",
                    "632bd80235a05f4192aefade": "value1",
                },
                "replicas": 3,
            },
            "sha256:8a980fcbeadd6f05818f07e8aec14070c22250ca3d96af1fcd5f93b3e85b4d70",
        ),
    ],
)
def test_config_digest_matches_flux(values, digest):
    assert config_digest(values) == digest


def test_whole_floats_digest_as_ints_as_after_helms_json_round_trip():
    assert config_digest({"replicas": 3.0}) == config_digest({"replicas": 3})


@pytest.mark.parametrize(
    ("values", "text"),
    [
        ({"tag": "1.0"}, 'tag: "1.0"\n'),  # go-yaml double-quotes strings that read as other types
        ({"on": "true"}, '"on": "true"\n'),
        ({"answer": "y"}, 'answer: "y"\n'),
        ({"port": "8080"}, 'port: "8080"\n'),
        ({"name": "nginx"}, "name: nginx\n"),
        ({"script": "a\nb\n"}, "script: |\n  a\n  b\n"),
        ({"ratio": 0.5, "big": 1234567.5}, "big: 1.2345675e+06\nratio: 0.5\n"),
        ({"empty": {}, "none": None, "list": []}, "empty: {}\nlist: []\nnone: null\n"),
    ],
)
def test_values_yaml_is_go_yaml_v2(values, text):
    assert values_yaml(values) == text


@pytest.mark.parametrize(
    ("value", "json", "yaml"),
    [
        (0.5, "0.5", "0.5"),
        (3.0, "3", "3"),
        (1e-05, "0.00001", "1e-05"),
        (1e-07, "1e-7", "1e-07"),
        (1e21, "1e+21", "1e+21"),
        (1234567.5, "1234567.5", "1.2345675e+06"),
        (-2.5e-10, "-2.5e-10", "-2.5e-10"),
    ],
)
def test_floats_are_written_as_go_writes_them(value, json, yaml):
    assert go_float(value, "json") == json
    assert go_float(value, "yaml") == yaml


def ref(kind="ConfigMap", name="vals", **kw):
    return ValuesReference.model_validate({"kind": kind, "name": name, **kw})


def data_from(objects):
    return lambda kind, name: objects.get((kind, name))


def test_values_from_merge_in_order_then_inline_values():
    objects = {
        ("ConfigMap", "a"): {"values.yaml": "image: {repository: a, tag: '1'}\nreplicas: 1\n"},
        ("Secret", "b"): {"custom": "image: {tag: '2'}\nlist: [1, 2]\n"},
    }
    got = compose_values(
        [ref(name="a"), ref("Secret", "b", valuesKey="custom")],
        "ns",
        data_from(objects),
        {"replicas": 3, "list": [9]},
    )
    assert got == {"image": {"repository": "a", "tag": "2"}, "replicas": 3, "list": [9]}


def test_target_path_sets_with_set_typing_and_inline_values_still_win():
    objects = {("Secret", "s"): {"password": "hunter2", "count": "3", "quoted": '"3"', "raw": "a,b[0]"}}
    got = compose_values(
        [
            ref("Secret", "s", valuesKey="password", targetPath="auth.password"),
            ref("Secret", "s", valuesKey="count", targetPath="scale.count"),
            ref("Secret", "s", valuesKey="quoted", targetPath="asString"),
            ref("Secret", "s", valuesKey="raw", targetPath="literal", literal=True),
        ],
        "ns",
        data_from(objects),
        {"auth": {"password": "inline", "user": "admin"}, "replicas": 1},
    )
    assert got["auth"] == {"password": "inline", "user": "admin"}  # inline values merge last (Flux)
    assert got["replicas"] == 1
    assert got["scale"] == {"count": 3}  # typed as --set types it
    assert got["asString"] == "3"
    assert got["literal"] == "a,b[0]"


def test_optional_references_are_skipped_when_missing():
    got = compose_values(
        [ref(name="gone", optional=True), ref(name="present", valuesKey="nokey", optional=True)],
        "ns",
        data_from({("ConfigMap", "present"): {"values.yaml": "a: 1"}}),
        {"b": 2},
    )
    assert got == {"b": 2}


@pytest.mark.parametrize(
    ("objects", "message"),
    [
        ({}, "not found"),
        ({("ConfigMap", "vals"): {"other": "a: 1"}}, "key not found"),
    ],
)
def test_missing_required_references_are_errors(objects, message):
    with pytest.raises(ValuesReferenceNotFound, match=message) as err:
        compose_values([ref()], "ns", data_from(objects), None)
    assert "ConfigMap chart values reference 'ns/vals' with key 'values.yaml'" in str(err.value)


@pytest.mark.parametrize("text", ["- a\n- b\n", "a: [unclosed\n"])
def test_values_that_are_not_a_map_are_refused(text):
    with pytest.raises(ValuesDataInvalid):
        compose_values([ref()], "ns", data_from({("ConfigMap", "vals"): {"values.yaml": text}}), None)
