"""Every Flux example in e2e/examples round-trips through the models; the invalid ones are rejected."""

from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from tide.shared.api import load, model_for

EXAMPLES = Path(__file__).resolve().parents[2] / "e2e" / "examples"


def documents(folder: str) -> list[tuple[str, dict[str, Any]]]:
    found = []
    for path in sorted((EXAMPLES / folder).glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                found.append((f"{path.name}:{doc['metadata']['name']}", doc))
    return found


VALID = documents("seed") + documents("flux")
INVALID = [
    (path.name, text.splitlines()[0].removeprefix("# rejected: "), yaml.safe_load(text))
    for path in sorted((EXAMPLES / "invalid").glob("*.yaml"))
    for text in [path.read_text()]
]


def test_the_seed_examples_are_all_there() -> None:
    kinds = sorted(doc["kind"] for _, doc in documents("seed"))
    assert kinds == ["GitRepository", "HelmRelease", "Kustomization", "Kustomization", "Kustomization"]


def test_every_kind_has_documented_examples() -> None:
    from tide.shared.api import ALL_KINDS

    assert {doc["kind"] for _, doc in VALID} == {kind.kind for kind in ALL_KINDS}


@pytest.mark.parametrize(("name", "doc"), VALID, ids=[name for name, _ in VALID])
def test_example_round_trips(name: str, doc: dict[str, Any]) -> None:
    obj = load(doc)
    assert obj.to_dict() == doc
    assert obj.model_dump(by_alias=True, exclude_none=True, mode="json") == doc
    assert obj.api_version == doc["apiVersion"]


@pytest.mark.parametrize(("name", "expected", "doc"), INVALID, ids=[name for name, _, _ in INVALID])
def test_invalid_example_is_rejected(name: str, expected: str, doc: dict[str, Any]) -> None:
    model = model_for(doc["apiVersion"], doc["kind"])
    assert model is not None
    with pytest.raises(ValidationError) as error:
        model.from_dict(doc)
    message = str(error.value)
    # pydantic reports locations by wire name, like the API server (spec.sourceRef.kind).
    assert expected.split(":")[0] in message or expected in message
