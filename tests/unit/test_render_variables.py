"""postBuild variables, as the controller and `tide build` both read them (shared/kustomize/render)."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from tide.shared.api.kustomize import PostBuild
from tide.shared.kustomize.render import VariablesSourceNotFound, substitution_variables

OBJECTS: dict[tuple[str, str], dict[str, Any]] = {
    ("ConfigMap", "vars"): {"data": {"A": "from-cm", "B": "cm"}},
    ("Secret", "creds"): {"data": {"B": base64.b64encode(b"from-secret").decode()}},
}


async def get(kind: str, name: str) -> dict[str, Any] | None:
    return OBJECTS.get((kind, name))


@pytest.mark.parametrize(
    ("post", "expected"),
    [
        (None, None),
        ({}, None),
        ({"substituteStrategy": "Always"}, {}),
        ({"substitute": {"X": "1"}}, {"X": "1"}),
        (
            {
                "substituteFrom": [
                    {"kind": "ConfigMap", "name": "vars"},
                    {"kind": "Secret", "name": "creds"},
                ],
                "substitute": {"A": "inline"},
            },
            {"A": "inline", "B": "from-secret"},
        ),
        ({"substituteFrom": [{"kind": "ConfigMap", "name": "gone", "optional": True}]}, None),
    ],
)
async def test_variables(post: dict[str, Any] | None, expected: dict[str, str] | None) -> None:
    model = PostBuild.model_validate(post) if post is not None else None
    assert await substitution_variables(model, get) == expected


async def test_a_missing_required_source_is_a_typed_error() -> None:
    post = PostBuild.model_validate({"substituteFrom": [{"kind": "Secret", "name": "gone"}]})
    with pytest.raises(VariablesSourceNotFound) as info:
        await substitution_variables(post, get)
    assert (info.value.kind, info.value.name) == ("Secret", "gone")
