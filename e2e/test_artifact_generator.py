"""An ArtifactGenerator splits a GitRepository into ExternalArtifacts that Kustomizations apply; a
commit under one path moves only that artifact (and only its Kustomization re-applies)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from e2e.fixtures.kustomize import get_obj, git_source, kustomization, wait_ks, wait_until
from e2e.fixtures.source import apply, condition, request_reconcile, wait_failing, wait_ready

pytestmark = pytest.mark.e2e

AG_API = "source.extensions.fluxcd.io/v1beta1"


def configmap(name: str, **data: str) -> str:
    lines = "".join(f'  {k}: "{v}"\n' for k, v in data.items())
    return f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n{lines}"


def generator(name: str, artifacts: dict[str, str], source: str = "repo", **spec: Any) -> dict[str, Any]:
    """One output per (name, directory), each the directory's contents at the artifact root."""
    return {
        "apiVersion": AG_API, "kind": "ArtifactGenerator", "metadata": {"name": name},
        "spec": {
            "sources": [{"alias": "repo", "kind": "GitRepository", "name": source}],
            "artifacts": [
                {"name": out, "originRevision": "@repo",
                 "copy": [{"from": f"@repo/{path}/**", "to": "@artifact/"}]}
                for out, path in artifacts.items()
            ],
            **spec,
        },
    }  # fmt: skip


def external(name: str, path: str = "./", interval: str = "1h", **spec: Any) -> dict[str, Any]:
    ks = kustomization(name, path=path, interval=interval, **spec)
    ks["spec"]["sourceRef"] = {"kind": "ExternalArtifact", "name": name}
    return ks


@pytest.fixture
def generators(flux_controllers, kubectl, namespace) -> Iterator[Callable[..., Any]]:  # type: ignore[no-untyped-def]
    """The controllers; at teardown the ArtifactGenerators go first, while the source controller
    still runs to finalize them."""
    yield flux_controllers
    kubectl("delete", "artifactgenerators.source.extensions.fluxcd.io", "--all", "-n", namespace,
            "--wait=true", "--timeout=60s", check=False)  # fmt: skip


def ea(kubectl: Callable[..., Any], namespace: str, name: str) -> dict[str, Any]:
    return get_obj(kubectl, namespace, "externalartifacts.source.toolkit.fluxcd.io", name)


def ea_revision(kubectl: Callable[..., Any], namespace: str, name: str) -> str | None:
    return ((ea(kubectl, namespace, name).get("status") or {}).get("artifact") or {}).get("revision")


def test_generator_splits_a_repository_and_moves_only_what_changed(  # type: ignore[no-untyped-def]
    git_server, generators, flux, kubectl, namespace
) -> None:
    repo = git_server.create_repo(f"ag-{namespace}", {
        "apps/frontend/cm.yaml": configmap("frontend", color="blue"),
        "apps/frontend/README.md": "not a manifest",
        "apps/backend/cm.yaml": configmap("backend", color="red"),
        "other/ignored.yaml": configmap("ignored"),
    })  # fmt: skip
    generators()
    spec_exclude = generator("apps", {"frontend": "apps/frontend", "backend": "apps/backend"})
    spec_exclude["spec"]["artifacts"][0]["copy"][0]["exclude"] = ["*.md"]
    apply(kubectl, namespace, git_source("repo", repo.public_http_url), spec_exclude,
          external("frontend", targetNamespace=namespace),
          external("backend", targetNamespace=namespace))  # fmt: skip
    head = f"main@sha1:{repo.head()}"
    wait_ready(kubectl, namespace, "repo", revision=head)
    ag = wait_ready(kubectl, namespace, "apps", kind="artifactgenerators.source.extensions.fluxcd.io")
    assert condition(ag, "Ready")["message"] == "reconciliation succeeded, generated 2 artifact(s)"
    assert sorted(i["name"] for i in ag["status"]["inventory"]) == ["backend", "frontend"]

    front, back = ea(kubectl, namespace, "frontend"), ea(kubectl, namespace, "backend")
    for obj in (front, back):
        artifact = obj["status"]["artifact"]
        assert artifact["revision"] == f"latest@{artifact['digest']}"
        assert artifact["metadata"] == {"org.opencontainers.image.revision": head}
        assert artifact["url"].endswith(f"/externalartifact/{namespace}/{obj['metadata']['name']}/"
                                        f"{artifact['digest'].removeprefix('sha256:')}.tar.gz")  # fmt: skip
        assert condition(obj, "Ready")["status"] == "True"
        assert obj["spec"]["sourceRef"] == {"apiVersion": AG_API, "kind": "ArtifactGenerator",
                                            "name": "apps", "namespace": namespace}  # fmt: skip
        assert obj["metadata"]["labels"]["source.extensions.fluxcd.io/generator"] == ag["metadata"]["uid"]
    assert front["status"]["artifact"]["digest"] != back["status"]["artifact"]["digest"]

    front_rev, back_rev = front["status"]["artifact"]["revision"], back["status"]["artifact"]["revision"]
    wait_ks(kubectl, namespace, "frontend", revision=front_rev)
    backend_ks = wait_ks(kubectl, namespace, "backend", revision=back_rev)
    assert get_obj(kubectl, namespace, "configmap", "frontend")["data"] == {"color": "blue"}
    assert get_obj(kubectl, namespace, "configmap", "backend")["data"] == {"color": "red"}
    assert not get_obj(kubectl, namespace, "configmap", "ignored")

    # The real Flux CLI lists Tide's generators and external artifacts.
    ns = ("-n", namespace)
    listed = flux("get", "artifacts", "generators", *ns).stdout
    assert "apps" in listed and "generated 2 artifact(s)" in listed
    listed = flux("get", "sources", "external", *ns).stdout
    assert "frontend" in listed and "backend" in listed and front_rev[:18] in listed

    # A commit under apps/frontend: a new frontend revision, the backend artifact untouched.
    repo.commit({"apps/frontend/cm.yaml": configmap("frontend", color="green"),
                 "other/ignored.yaml": configmap("ignored", v="2")})  # fmt: skip
    request_reconcile(kubectl, namespace, "repo")
    new_head = f"main@sha1:{repo.head()}"
    wait_until(lambda: (ea(kubectl, namespace, "frontend").get("status") or {}).get("artifact", {})
               .get("metadata", {}).get("org.opencontainers.image.revision") == new_head, 60,
               "frontend artifact from the new commit")  # fmt: skip
    new_front = ea_revision(kubectl, namespace, "frontend")
    assert new_front != front_rev
    ag = wait_until(lambda: (lambda o: o if (o.get("status") or {}).get("observedSourcesDigest")
                             != ag["status"]["observedSourcesDigest"] else None)(
        get_obj(kubectl, namespace, "artifactgenerators.source.extensions.fluxcd.io", "apps")), 60,
        "the generator saw the new commit")  # fmt: skip
    assert ea(kubectl, namespace, "backend")["status"]["artifact"] == back["status"]["artifact"]
    wait_ks(kubectl, namespace, "frontend", revision=new_front)
    assert get_obj(kubectl, namespace, "configmap", "frontend")["data"] == {"color": "green"}
    # Evidence first (frontend re-applied after the generator ran), then: the backend
    # Kustomization was not reconciled at all.
    assert ks_unchanged(kubectl, namespace, "backend", backend_ks)

    # An output removed from the spec: its ExternalArtifact is deleted.
    apply(kubectl, namespace, generator("apps", {"frontend": "apps/frontend"}))
    wait_until(lambda: not ea(kubectl, namespace, "backend"), 60, "backend ExternalArtifact deleted")
    ag = wait_ready(kubectl, namespace, "apps", kind="artifactgenerators.source.extensions.fluxcd.io")
    assert [i["name"] for i in ag["status"]["inventory"]] == ["frontend"]

    # A deleted generator takes its ExternalArtifacts with it.
    kubectl("delete", "artifactgenerators.source.extensions.fluxcd.io", "apps", "-n", namespace,
            "--wait=true", "--timeout=60s")  # fmt: skip
    assert not ea(kubectl, namespace, "frontend")


def ks_unchanged(kubectl: Callable[..., Any], namespace: str, name: str, before: dict[str, Any]) -> bool:
    after = get_obj(kubectl, namespace, "kustomization", name)
    return bool(after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"])


def test_hostile_copy_operations_fail_with_a_clear_condition(  # type: ignore[no-untyped-def]
    git_server, generators, kubectl, namespace
) -> None:
    repo = git_server.create_repo(f"ag-bad-{namespace}", {"apps/cm.yaml": configmap("x")})
    generators()
    escape = generator("escape", {"escape": "apps"})
    escape["spec"]["artifacts"][0]["copy"] = [{"from": "@repo/../../../etc/passwd", "to": "@artifact/"}]
    missing = generator("missing", {"missing": "nothing-here"})
    unknown = generator("unknown", {"unknown": "apps"})
    unknown["spec"]["artifacts"][0]["copy"][0]["from"] = "@nope/apps/**"
    pattern = generator("pattern", {"pattern": "apps"}, pathPattern="@repo/apps/{app}")
    apply(kubectl, namespace, git_source("repo", repo.public_http_url), escape, missing, unknown, pattern)
    kind = "artifactgenerators.source.extensions.fluxcd.io"
    obj = wait_failing(kubectl, namespace, "escape", contains="must not contain '..'", kind=kind)
    assert condition(obj, "Ready")["reason"] == "BuildFailed"
    obj = wait_failing(kubectl, namespace, "missing", contains="no files match pattern", kind=kind)
    assert condition(obj, "Ready")["reason"] == "BuildFailed"
    obj = wait_failing(kubectl, namespace, "unknown", contains="unknown source alias '@nope'", kind=kind)
    assert condition(obj, "Stalled")["status"] == "True"
    obj = wait_failing(kubectl, namespace, "pattern", contains="pathPattern is not supported", kind=kind)
    assert condition(obj, "Stalled")["status"] == "True"
    assert not ea(kubectl, namespace, "escape") and not ea(kubectl, namespace, "missing")

    # A forged ExternalArtifact whose status points at another object's stored artifact (with its
    # digest) is refused: a generator composes only what the source controller stored for that source.
    repo_artifact = wait_ready(kubectl, namespace, "repo")["status"]["artifact"]
    apply(kubectl, namespace, {"apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "ExternalArtifact",
                               "metadata": {"name": "forged"}, "spec": {}})  # fmt: skip
    forged = {"status": {"artifact": repo_artifact, "conditions": [
        {"type": "Ready", "status": "True", "reason": "Succeeded", "message": "forged",
         "lastTransitionTime": "2025-01-01T00:00:00Z"}]}}  # fmt: skip
    kubectl("patch", "externalartifact", "forged", "-n", namespace, "--subresource=status", "--type=merge",
            "-p", json.dumps(forged))  # fmt: skip
    thief = generator("thief", {"loot": "apps"})
    thief["spec"]["sources"] = [{"alias": "repo", "kind": "ExternalArtifact", "name": "forged"}]
    apply(kubectl, namespace, thief)
    wait_failing(kubectl, namespace, "thief", contains="is not one this source controller stored", kind=kind)
    assert not ea(kubectl, namespace, "loot")

    # A second generator cannot take over the ExternalArtifact of the first.
    apply(kubectl, namespace, generator("first", {"shared": "apps"}))
    wait_ready(kubectl, namespace, "first", kind=kind)
    label = "source.extensions.fluxcd.io/generator"
    owner = ea(kubectl, namespace, "shared")["metadata"]["labels"][label]
    apply(kubectl, namespace, generator("second", {"shared": "apps"}))
    wait_failing(kubectl, namespace, "second", contains="belongs to another ArtifactGenerator", kind=kind)
    assert ea(kubectl, namespace, "shared")["metadata"]["labels"][label] == owner
    events = json.loads(kubectl("get", "events", "-n", namespace, "-o", "json").stdout)["items"]
    assert any(e["reason"] == "BuildFailed" and "must not contain '..'" in e["message"] for e in events)
