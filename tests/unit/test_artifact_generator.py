"""ArtifactGenerator decisions: spec validation, the sources digest, which generators a change wakes."""

from __future__ import annotations

from typing import Any

import pytest

from tide.controllers.source.artifact_generator import (
    ObservedSource,
    generators_using,
    sources_digest,
    validate,
)
from tide.shared.api import ArtifactGenerator
from tide.shared.api.meta import Artifact
from tide.shared.runtime import StalledError


def generator(**spec: Any) -> ArtifactGenerator:
    body: dict[str, Any] = {
        "sources": [{"alias": "repo", "kind": "GitRepository", "name": "mono"}],
        "artifacts": [{"name": "front", "copy": [{"from": "@repo/front/**", "to": "@artifact/"}]}],
    }
    body.update(spec)
    return ArtifactGenerator.from_dict(
        {
            "apiVersion": "source.extensions.fluxcd.io/v1beta1",
            "kind": "ArtifactGenerator",
            "metadata": {"name": "ag", "namespace": "apps"},
            "spec": body,
        }
    )


def copy(from_: str) -> list[dict[str, str]]:
    return [{"from": from_, "to": "@artifact/"}]


@pytest.mark.parametrize(
    ("spec", "cross", "reason", "message"),
    [
        ({"pathPattern": "@repo/apps/{app}"}, False, "ValidationFailed", "pathPattern is not supported"),
        ({"sources": [{"alias": "repo", "kind": "GitRepository", "name": "a"},
                      {"alias": "repo", "kind": "Bucket", "name": "b"}]}, False,
         "ValidationFailed", "duplicate source alias(es): repo"),
        ({"artifacts": [{"name": "x", "copy": copy("@repo/a")}, {"name": "x", "copy": copy("@repo/b")}]},
         False, "ValidationFailed", "duplicate artifact name(s): x"),
        ({"artifacts": [{"name": "x", "copy": copy("@other/a")}]}, False, "ValidationFailed",
         "copy from unknown source alias '@other'"),
        ({"artifacts": [{"name": "x", "revision": "@other", "copy": copy("@repo/a")}]}, False,
         "ValidationFailed", "unknown source alias '@other'"),
        ({"sources": [{"alias": "repo", "kind": "GitRepository", "name": "a", "namespace": "other"}]}, True,
         "AccessDenied", "cross-namespace references are not allowed"),
    ],
)  # fmt: skip
def test_invalid_specs_stall(spec: dict[str, Any], cross: bool, reason: str, message: str) -> None:
    with pytest.raises(StalledError) as err:
        validate(generator(**spec), cross)
    assert err.value.reason == reason and message in err.value.message


def test_a_valid_spec_passes_and_cross_namespace_is_allowed_by_default() -> None:
    validate(
        generator(sources=[{"alias": "repo", "kind": "GitRepository", "name": "a", "namespace": "o"}]), False
    )


def test_sources_digest_depends_on_every_artifact_not_on_order() -> None:
    def observed(revision: str) -> ObservedSource:
        artifact = Artifact(path="p", url="http://x/p", revision=revision, digest="sha256:00",
                            last_update_time="2025-01-01T00:00:00Z")  # fmt: skip
        return ObservedSource("GitRepository", "apps", "mono", artifact)

    a = sources_digest({"a": observed("r1"), "b": observed("r2")})
    assert a == sources_digest({"b": observed("r2"), "a": observed("r1")})
    assert a != sources_digest({"a": observed("r1"), "b": observed("r3")})
    assert a.startswith("sha256:")


def test_a_source_change_wakes_the_generators_using_or_owning_it() -> None:
    gens = [
        {"metadata": {"namespace": "apps", "name": "uses"},
         "spec": {"sources": [{"kind": "GitRepository", "name": "mono"}]}},
        {"metadata": {"namespace": "apps", "name": "cross"},
         "spec": {"sources": [{"kind": "GitRepository", "name": "mono", "namespace": "other"}]}},
        {"metadata": {"namespace": "apps", "name": "owns"}, "spec": {"sources": []},
         "status": {"inventory": [{"name": "front", "namespace": "apps"}]}},
    ]  # fmt: skip
    assert generators_using(gens, "GitRepository", "apps", "mono") == [("apps", "uses")]
    assert generators_using(gens, "GitRepository", "other", "mono") == [("apps", "cross")]
    assert generators_using(gens, "ExternalArtifact", "apps", "front") == [("apps", "owns")]
    assert generators_using(gens, "Bucket", "apps", "mono") == []
