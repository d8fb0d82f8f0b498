"""The CRDs generated from the models: structural schemas with Flux's names, defaults and validation."""

from typing import Any

import pytest

from tide.shared.api import ALL_KINDS, GitRepository, HelmRelease, Kustomization, Provider
from tide.shared.api.crdgen import PRESERVE, SchemaError, crd, structural
from tide.shared.api.meta import DURATION_PATTERN, KubeObject


def schema(kind: type[KubeObject], version: int = 0) -> dict[str, Any]:
    root: dict[str, Any] = crd(kind)["spec"]["versions"][version]["schema"]["openAPIV3Schema"]
    return root


def at(node: dict[str, Any], path: str) -> dict[str, Any]:
    for part in path.split("."):
        node = node["items"] if part == "[]" else node["properties"][part]
    return node


def walk(node: dict[str, Any], where: str = "") -> list[tuple[str, dict[str, Any]]]:
    found = [(where, node)]
    for name, sub in node.get("properties", {}).items():
        found += walk(sub, f"{where}.{name}")
    if "items" in node:
        found += walk(node["items"], f"{where}[]")
    if isinstance(node.get("additionalProperties"), dict):
        found += walk(node["additionalProperties"], f"{where}{{}}")
    return found


@pytest.mark.parametrize("kind", ALL_KINDS, ids=[k.kind for k in ALL_KINDS])
def test_schemas_are_structural(kind: type[KubeObject]) -> None:
    for where, node in walk(schema(kind)):
        assert "type" in node or node.get(PRESERVE), f"{kind.kind}{where} has no type"
        for banned in ("$ref", "anyOf", "oneOf", "allOf", "title", "const", "$defs"):
            assert banned not in node, f"{kind.kind}{where} uses {banned}"
        assert node.get("default", 0) is not None, f"{kind.kind}{where} has a null default"


@pytest.mark.parametrize("kind", ALL_KINDS, ids=[k.kind for k in ALL_KINDS])
def test_crd_names_scope_and_labels(kind: type[KubeObject]) -> None:
    generated = crd(kind)
    assert generated["metadata"]["name"] == f"{kind.plural}.{kind.group}"
    assert generated["metadata"]["labels"]["app.kubernetes.io/part-of"] == "flux"
    names = generated["spec"]["names"]
    assert names["kind"] == kind.kind and names["listKind"] == f"{kind.kind}List"
    assert names["categories"][:2] == ["all", "fluxcd"]  # `kubectl get fluxcd` lists every Flux object
    if kind.group.startswith("source."):
        assert names["categories"] == ["all", "fluxcd", "fluxcd-sources"]
    assert names.get("shortNames", []) == list(kind.short_names)
    assert generated["spec"]["scope"] == "Namespaced"
    storage = [v["name"] for v in generated["spec"]["versions"] if v["storage"]]
    assert storage == [kind.version]


@pytest.mark.parametrize("kind", ALL_KINDS, ids=[k.kind for k in ALL_KINDS])
def test_status_subresource_and_default(kind: type[KubeObject]) -> None:
    version = crd(kind)["spec"]["versions"][0]
    columns = [c["name"] for c in version["additionalPrinterColumns"]]
    assert "Age" in columns
    if kind.status_model() is None:
        assert "subresources" not in version and "status" not in schema(kind)["properties"]
        return
    assert version["subresources"] == {"status": {}}
    status = at(schema(kind), "status")
    assert status["default"] == {"observedGeneration": -1}
    assert {"conditions", "observedGeneration", "lastHandledReconcileAt"} <= set(status["properties"])
    assert {"Ready", "Status"} <= set(columns)


def test_source_printer_columns_show_the_url() -> None:
    columns = crd(GitRepository)["spec"]["versions"][0]["additionalPrinterColumns"]
    assert [c["name"] for c in columns] == ["URL", "Age", "Ready", "Status"]
    assert columns[2]["jsonPath"] == '.status.conditions[?(@.type=="Ready")].status'


def test_durations_patterns_enums_and_required_fields() -> None:
    spec = at(schema(GitRepository), "spec")
    assert spec["required"] == ["url", "interval"]
    assert at(spec, "interval")["pattern"] == DURATION_PATTERN and at(spec, "interval")["type"] == "string"
    assert "description" in at(spec, "interval")  # for kubectl explain
    assert at(spec, "timeout")["default"] == "60s"
    assert at(spec, "url")["pattern"] == "^(http|https|ssh)://.*$"
    assert at(spec, "provider")["enum"] == ["generic", "aws", "azure", "github"]
    assert at(spec, "timeout")["pattern"] == r"^([0-9]+(\.[0-9]+)?(ms|s|m))+$"
    assert "serviceAccountName" in spec["x-kubernetes-validations"][0]["rule"]
    assert at(spec, "verify.mode")["default"] == "HEAD"

    ks = at(schema(Kustomization), "spec")
    assert set(ks["required"]) == {"interval", "prune", "sourceRef"}
    source_kinds = ["OCIRepository", "GitRepository", "Bucket", "ExternalArtifact"]
    assert at(ks, "sourceRef.kind")["enum"] == source_kinds
    assert at(ks, "targetNamespace")["maxLength"] == 63
    assert at(ks, "decryption.provider")["enum"] == ["sops"]
    assert at(ks, "force")["default"] is False
    assert at(ks, "postBuild.substitute") == {"type": "object", "additionalProperties": {"type": "string"}}


def test_helm_release_schema() -> None:
    spec = at(schema(HelmRelease), "spec")
    assert spec["x-kubernetes-validations"][0]["message"] == "either chart or chartRef must be set"
    values = at(spec, "values")
    assert values["type"] == "object" and values[PRESERVE] is True and "properties" not in values
    assert at(spec, "releaseName")["maxLength"] == 53
    assert at(spec, "chart.spec.version")["default"] == "*"
    assert at(spec, "install.disableOpenAPIValidation")["type"] == "boolean"
    assert at(spec, "upgrade.remediation.remediateLastFailure")["type"] == "boolean"
    assert at(spec, "uninstall.deletionPropagation")["default"] == "background"
    versions = crd(HelmRelease)["spec"]["versions"]
    assert [(v["name"], v["storage"], v.get("deprecated", False)) for v in versions] == [
        ("v2", True, False), ("v2beta2", False, True), ("v2beta1", False, True),
    ]  # fmt: skip
    assert all(v["schema"] == versions[0]["schema"] for v in versions)


def test_provider_timeout_has_no_hours_like_flux() -> None:
    assert at(schema(Provider), "spec.timeout")["pattern"] == r"^([0-9]+(\.[0-9]+)?(ms|s|m))+$"


def test_real_unions_are_refused() -> None:
    with pytest.raises(SchemaError, match="unions"):
        structural({"anyOf": [{"type": "string"}, {"type": "integer"}]}, {})
