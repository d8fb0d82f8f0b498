"""OCIRepository end to end: a real registry (docker-registry) filled by the real Flux CLI, the
real control plane and controller processes, and Kustomizations applying OCI artifacts."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import time
import urllib.request

import pytest

from e2e.cluster import free_port
from e2e.fixtures.kustomize import get_obj, kustomization, wait_ks, wait_until
from e2e.fixtures.source import (
    apply,
    condition,
    ocirepository,
    request_reconcile,
    secret,
    wait_failing,
    wait_handled,
    wait_ready,
)

pytestmark = pytest.mark.e2e

KIND = "ocirepository"
DOCKER_CONFIG = "kubernetes.io/dockerconfigjson"
FLUX_LAYER = "application/vnd.cncf.flux.content.v1.tar+gzip"


def download(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return bytes(resp.read())


def tar_names(body: bytes) -> list[str]:
    with tarfile.open(fileobj=io.BytesIO(body), mode="r:gz") as tar:
        return sorted(m.name for m in tar if m.isfile())


def tar_file(body: bytes, name: str) -> str:
    with tarfile.open(fileobj=io.BytesIO(body), mode="r:gz") as tar:
        f = tar.extractfile(name)
        assert f is not None
        return f.read().decode()


def configmap(name: str, **data: str) -> str:
    lines = "".join(f'  {k}: "{v}"\n' for k, v in data.items())
    return f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n{lines}"


def events(kubectl, namespace: str) -> list[dict]:  # type: ignore[no-untyped-def]
    return json.loads(kubectl("get", "events", "-n", namespace, "-o", "json").stdout)["items"]


def test_tag_ready_with_flux_revision_noop_is_one_head(
    oci_registry, source_controller, kubectl, namespace, flux
):  # type: ignore[no-untyped-def]
    registry = oci_registry.plain
    repo = f"{namespace}/app"
    digest = registry.push(repo, "v1", {
        "deploy/app.yaml": configmap("app", color="blue"),
        "docs/notes.txt": "not for the cluster\n",
    }, revision="main@sha1:" + "a" * 40)  # fmt: skip
    controller = source_controller()
    apply(kubectl, namespace, ocirepository("app", registry.url(repo), {"tag": "v1"}, ignore="docs/\n"))

    revision = f"v1@{digest}"
    obj = wait_ready(kubectl, namespace, "app", revision, kind=KIND)
    artifact = obj["status"]["artifact"]
    assert artifact["path"] == f"ocirepository/{namespace}/app/{digest}.tar.gz"
    assert artifact["url"] == controller.artifact_url(artifact["path"])
    assert obj["status"]["url"] == controller.artifact_url(f"ocirepository/{namespace}/app/latest.tar.gz")
    body = download(artifact["url"])
    assert artifact["digest"] == "sha256:" + hashlib.sha256(body).hexdigest()
    assert artifact["size"] == len(body)
    assert tar_names(body) == ["deploy/app.yaml"]  # spec.ignore dropped docs/
    assert download(obj["status"]["url"]) == body
    assert (
        artifact["metadata"]["org.opencontainers.image.source"] == "https://github.com/tide/oci-fixtures.git"
    )
    assert artifact["metadata"]["org.opencontainers.image.revision"] == "main@sha1:" + "a" * 40
    assert "org.opencontainers.image.created" in artifact["metadata"]
    message = f"stored artifact for digest '{revision}'"
    assert condition(obj, "Ready")["message"] == message
    assert condition(obj, "ArtifactInStorage")["message"] == message
    assert obj["status"]["observedIgnore"] == "docs/\n"
    new = [e for e in events(kubectl, namespace) if e["reason"] == "NewArtifact"]
    assert new and new[0]["message"] == (
        f"stored artifact with revision '{revision}' from '{registry.url(repo)}', origin source "
        f"'https://github.com/tide/oci-fixtures.git', origin revision 'main@sha1:{'a' * 40}'"
    )

    # Nothing moved: a reconcile is one HEAD of the manifest, no layer is pulled.
    mark = registry.mark()
    token = request_reconcile(kubectl, namespace, "app", KIND)
    wait_handled(kubectl, namespace, "app", token, kind=KIND)
    time.sleep(0.3)
    assert registry.requests_since(mark, repo) == [("HEAD", f"/v2/{repo}/manifests/v1", 200)]

    out = flux("get", "sources", "oci", "-n", namespace).stdout
    line = next(ln for ln in out.splitlines() if ln.startswith("app"))
    assert "True" in line and f"v1@{digest[:15]}" in line, out  # the CLI shortens digests


def test_kustomization_applies_each_pushed_revision(oci_registry, flux_controllers, flux, kubectl, namespace):  # type: ignore[no-untyped-def]
    registry = oci_registry.plain
    repo = f"{namespace}/config"
    first = registry.push(repo, "latest", {"deploy/cm.yaml": configmap("settings", color="blue")})
    flux_controllers()
    apply(kubectl, namespace,
          ocirepository("config", registry.url(repo), interval="10m"),
          kustomization("app", path="./deploy", source="config", targetNamespace=namespace,
                        sourceRef={"kind": "OCIRepository", "name": "config"}))  # fmt: skip
    ks = wait_ks(kubectl, namespace, "app", revision=f"latest@{first}")
    assert condition(ks, "Ready")["message"] == f"Applied revision: latest@{first}"
    assert get_obj(kubectl, namespace, "configmap", "settings")["data"] == {"color": "blue"}

    # A new artifact under the same tag, reconciled on demand by the Flux CLI with its source.
    second = registry.push(repo, "latest", {"deploy/cm.yaml": configmap("settings", color="green")})
    assert second != first
    res = flux("reconcile", "kustomization", "app", "--with-source", "-n", namespace, "--timeout=90s")
    assert f"fetched revision latest@{second}" in res.stderr
    assert f"applied revision latest@{second}" in res.stderr
    wait_ready(kubectl, namespace, "config", f"latest@{second}", kind=KIND)
    assert get_obj(kubectl, namespace, "configmap", "settings")["data"] == {"color": "green"}

    # `flux suspend/resume source oci` on Tide's OCIRepository.
    flux("suspend", "source", "oci", "config", "-n", namespace)
    assert get_obj(kubectl, namespace, KIND, "config")["spec"]["suspend"] is True
    res = flux("resume", "source", "oci", "config", "-n", namespace, "--timeout=90s")
    assert f"fetched revision latest@{second}" in res.stderr

    # And once more without the CLI: a reconcile request on the source alone.
    third = registry.push(repo, "latest", {"deploy/cm.yaml": configmap("settings", color="red")})
    request_reconcile(kubectl, namespace, "config", KIND)
    wait_ready(kubectl, namespace, "config", f"latest@{third}", kind=KIND)
    wait_ks(kubectl, namespace, "app", revision=f"latest@{third}")
    wait_until(lambda: get_obj(kubectl, namespace, "configmap", "settings")["data"] == {"color": "red"},
               30, "new revision applied")  # fmt: skip


def test_semver_filter_digest_and_copy(oci_registry, source_controller, kubectl, namespace):  # type: ignore[no-untyped-def]
    registry = oci_registry.plain
    repo = f"{namespace}/versions"
    digests = {}
    for tag in ("1.0.0", "v1.2.0", "1.10.1-rc.1", "2.0.0"):
        digests[tag] = registry.push(repo, tag, {"app.yaml": configmap("v", version=tag)})
    registry.tag(repo, "v1.2.0", "1.1.0")
    source_controller()
    apply(kubectl, namespace,
          ocirepository("range", registry.url(repo), {"semver": ">=1.0.0 <2.0.0", "tag": "2.0.0"}),
          ocirepository("rc", registry.url(repo), {"semver": ">=1.0.0-0", "semverFilter": ".*-rc.*"}),
          ocirepository("pinned", registry.url(repo), {"digest": digests["1.0.0"], "semver": "*"}),
          ocirepository("copy", registry.url(repo), {"tag": "2.0.0"},
                        layerSelector={"mediaType": FLUX_LAYER, "operation": "copy"}))  # fmt: skip

    wait_ready(kubectl, namespace, "range", f"v1.2.0@{digests['v1.2.0']}", kind=KIND)
    wait_ready(kubectl, namespace, "rc", f"1.10.1-rc.1@{digests['1.10.1-rc.1']}", kind=KIND)
    pinned = wait_ready(kubectl, namespace, "pinned", digests["1.0.0"], kind=KIND)
    assert pinned["status"]["artifact"]["path"].endswith(f"/{digests['1.0.0']}.tar.gz")
    assert 'version: "1.0.0"' in tar_file(download(pinned["status"]["artifact"]["url"]), "app.yaml")

    copied = wait_ready(kubectl, namespace, "copy", f"2.0.0@{digests['2.0.0']}", kind=KIND)
    manifest = json.loads(download_manifest(registry.host, repo, "2.0.0"))
    layer = manifest["layers"][0]
    artifact = copied["status"]["artifact"]
    assert artifact["digest"] == layer["digest"]  # the layer blob as-is
    assert artifact["size"] == layer["size"]
    assert copied["status"]["observedLayerSelector"] == {"mediaType": FLUX_LAYER, "operation": "copy"}


def download_manifest(host: str, repo: str, ref: str) -> bytes:
    req = urllib.request.Request(
        f"http://{host}/v2/{repo}/manifests/{ref}",
        headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return bytes(resp.read())


def test_failures_are_clear(oci_registry, source_controller, kubectl, namespace):  # type: ignore[no-untyped-def]
    registry = oci_registry.plain
    repo = f"{namespace}/app"
    registry.push(repo, "v1", {"app.yaml": configmap("a")})
    source_controller()
    apply(kubectl, namespace,
          ocirepository("missing-tag", registry.url(repo), {"tag": "nope"}),
          ocirepository("no-range", registry.url(repo), {"semver": ">=5.0.0"}),
          ocirepository("unreachable", f"oci://127.0.0.1:{free_port()}/app", timeout="5s"),
          ocirepository("no-secret", registry.url(repo), secret="absent"),
          ocirepository("bad-url", f"oci://{registry.host}/app:v1"),
          ocirepository("cloud", registry.url(repo), provider="aws"))  # fmt: skip

    obj = wait_failing(kubectl, namespace, "missing-tag", contains="MANIFEST_UNKNOWN", kind=KIND)
    ready = condition(obj, "Ready")
    assert ready["reason"] == "OCIArtifactPullFailed"
    assert ready["message"] == (
        f"failed to determine artifact digest: GET http://{registry.host}/v2/{repo}/manifests/nope: "
        "MANIFEST_UNKNOWN: manifest unknown; map[Tag:nope]"
    )
    assert condition(obj, "FetchFailed")["status"] == "True"
    obj = wait_failing(kubectl, namespace, "no-range", contains="no match found for semver", kind=KIND)
    assert condition(obj, "Ready")["reason"] == "ReadOperationFailed"
    obj = wait_failing(kubectl, namespace, "unreachable", contains="artifact digest", kind=KIND)
    assert "connect" in condition(obj, "Ready")["message"].lower()
    obj = wait_failing(kubectl, namespace, "no-secret", contains='secrets "absent" not found', kind=KIND)
    assert condition(obj, "Ready")["reason"] == "AuthenticationFailed"
    obj = wait_failing(kubectl, namespace, "bad-url", contains="URL must not contain a tag", kind=KIND)
    assert condition(obj, "Stalled")["status"] == "True"
    obj = wait_failing(kubectl, namespace, "cloud", contains="provider 'aws' is not supported", kind=KIND)
    assert condition(obj, "Stalled")["status"] == "True"

    warnings = {(e["involvedObject"]["name"], e["reason"]) for e in events(kubectl, namespace)
                if e["type"] == "Warning"}  # fmt: skip
    assert ("missing-tag", "OCIArtifactPullFailed") in warnings
    assert ("no-secret", "AuthenticationFailed") in warnings


def test_basic_auth_over_tls(oci_registry, source_controller, kubectl, namespace):  # type: ignore[no-untyped-def]
    registry = oci_registry.auth
    assert registry.tls is not None
    repo = f"{namespace}/private"
    digest = registry.push(repo, "v1", {"app.yaml": configmap("private")})
    source_controller()
    url, v1, ca = registry.url(repo), {"tag": "v1"}, {"name": "ca"}
    apply(kubectl, namespace,
          secret("creds", {".dockerconfigjson": registry.docker_config()}, DOCKER_CONFIG),
          secret("wrong", {".dockerconfigjson": registry.docker_config(password="nope")}, DOCKER_CONFIG),
          secret("ca", {"ca.crt": registry.tls.ca_pem}),
          ocirepository("good", url, v1, secret="creds", certSecretRef=ca),
          ocirepository("wrong", url, v1, secret="wrong", certSecretRef=ca),
          ocirepository("anonymous", url, v1, certSecretRef=ca),
          ocirepository("untrusted", url, v1, secret="creds"))  # fmt: skip

    obj = wait_ready(kubectl, namespace, "good", f"v1@{digest}", kind=KIND)
    assert tar_names(download(obj["status"]["artifact"]["url"])) == ["app.yaml"]
    for name in ("wrong", "anonymous"):
        obj = wait_failing(kubectl, namespace, name, contains="UNAUTHORIZED", kind=KIND)
        assert condition(obj, "Ready")["reason"] == "OCIArtifactPullFailed"
    obj = wait_failing(kubectl, namespace, "untrusted", contains="certificate verify failed", kind=KIND)


def test_bearer_token_auth(oci_registry, source_controller, kubectl, namespace):  # type: ignore[no-untyped-def]
    registry = oci_registry.token
    assert registry.tokens is not None
    repo = f"{namespace}/private"
    digest = registry.push(repo, "v1", {"app.yaml": configmap("private")})
    source_controller()
    url, v1 = registry.url(repo), {"tag": "v1"}
    other = registry.url(f"{namespace}/other")  # the failing ones retry: away from repo's request log
    apply(kubectl, namespace,
          secret("creds", {".dockerconfigjson": registry.docker_config()}, DOCKER_CONFIG),
          secret("wrong", {".dockerconfigjson": registry.docker_config(password="nope")}, DOCKER_CONFIG),
          ocirepository("good", url, v1, secret="creds"),
          ocirepository("wrong", other, v1, secret="wrong"),
          ocirepository("anonymous", other, v1))  # fmt: skip

    obj = wait_ready(kubectl, namespace, "good", f"v1@{digest}", kind=KIND)
    assert tar_names(download(obj["status"]["artifact"]["url"])) == ["app.yaml"]
    assert ("oci-user", f"repository:{repo}:pull") in registry.tokens.issued
    obj = wait_failing(kubectl, namespace, "wrong", contains="failed to get a token", kind=KIND)
    assert "401" in condition(obj, "Ready")["message"]
    obj = wait_failing(kubectl, namespace, "anonymous", contains="UNAUTHORIZED", kind=KIND)

    # The token is reused: a no-op reconcile is one HEAD, no token request (the failing objects
    # keep retrying meanwhile, so only the good account's tokens count).
    def issued() -> int:
        return sum(1 for account, _ in registry.tokens.issued if account == "oci-user")

    before, mark = issued(), registry.mark()
    token = request_reconcile(kubectl, namespace, "good", KIND)
    wait_handled(kubectl, namespace, "good", token, kind=KIND)
    time.sleep(0.3)
    assert registry.requests_since(mark, repo) == [("HEAD", f"/v2/{repo}/manifests/v1", 200)]
    assert issued() == before


def test_tide_cli_creates_and_reconciles_an_oci_source(oci_registry, flux_controllers, tide, kubectl,  # type: ignore[no-untyped-def]
                                                      namespace) -> None:  # fmt: skip
    registry = oci_registry.plain
    repo = f"{namespace}/site"
    first = registry.push(repo, "v1.0.0", {"deploy/cm.yaml": configmap("site", v="1")})
    flux_controllers()
    ns = ["-n", namespace, "--timeout", "90s"]
    res = tide(*ns, "create", "source", "oci", "site", "--url", registry.url(repo), "--tag-semver", ">=1.0.0",
               "--insecure")  # fmt: skip
    assert "is ready" in res.stderr
    res = tide(*ns, "create", "kustomization", "site", "--source", "OCIRepository/site", "--path", "./deploy",
               "--prune", "--target-namespace", namespace)  # fmt: skip
    assert "is ready" in res.stderr
    assert f"v1.0.0@{first}"[:20] in tide(*ns, "get", "sources", "oci").stdout
    second = registry.push(repo, "v1.1.0", {"deploy/cm.yaml": configmap("site", v="2")})
    res = tide(*ns, "reconcile", "ks", "site", "--with-source")
    assert f"applied revision v1.1.0@{second}" in res.stderr
    assert get_obj(kubectl, namespace, "configmap", "site")["data"] == {"v": "2"}
