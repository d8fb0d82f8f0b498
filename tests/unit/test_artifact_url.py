"""status.artifact.url is written by whoever can write a source's status: the kustomize controller
downloads only from the source controller's storage address (--source-storage-addr)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.test_artifact_cache import Artifacts, absolute, serve
from tide.controllers.kustomize import main as kustomize_main
from tide.controllers.kustomize.main import source_storage_addresses
from tide.controllers.kustomize.reconciler import KustomizationReconciler
from tide.shared.artifact import ArtifactURLRefused, check_artifact_url
from tide.shared.artifact.fetch import ArtifactCache

IN_CLUSTER = "source-controller.flux-system.svc.cluster.local."


@pytest.mark.parametrize(
    "url",
    [
        f"http://{IN_CLUSTER}/gitrepository/apps/repo/abc.tar.gz",
        "http://source-controller.flux-system.svc.cluster.local/gitrepository/apps/repo/abc.tar.gz",
        "http://SOURCE-CONTROLLER.flux-system.svc.cluster.local.:80/x.tar.gz",
    ],
)
def test_artifacts_from_the_storage_address_are_fetched(url: str) -> None:
    check_artifact_url(url, [IN_CLUSTER])


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/iam/security-credentials/",  # cloud metadata
        "http://attacker.example/payload.tar.gz",
        f"http://{IN_CLUSTER}:8080/x.tar.gz",  # another port of the same host
        f"http://{IN_CLUSTER}.attacker.example/x.tar.gz",
        f"http://user@attacker.example/{IN_CLUSTER}/x.tar.gz",
        f"file:///var/run/secrets/kubernetes.io/serviceaccount/token#{IN_CLUSTER}",
        f"ftp://{IN_CLUSTER}/x.tar.gz",
        "/gitrepository/apps/repo/abc.tar.gz",
        "http://[::1/x",
    ],
)
def test_artifacts_from_anywhere_else_are_refused(url: str) -> None:
    with pytest.raises(ArtifactURLRefused, match="source controller's storage address"):
        check_artifact_url(url, [IN_CLUSTER])


def test_several_source_controllers_sharding() -> None:
    storage = ["source-controller.flux-system.svc.cluster.local.", "127.0.0.1:9090"]
    check_artifact_url("http://127.0.0.1:9090/x.tar.gz", storage)
    with pytest.raises(ArtifactURLRefused):
        check_artifact_url("http://127.0.0.1:9091/x.tar.gz", storage)


def test_the_flag_and_its_in_cluster_default() -> None:
    parser = kustomize_main.arg_parser()
    assert source_storage_addresses(parser.parse_args(["--runtime-namespace=gitops"])) == [
        "source-controller.gitops.svc.cluster.local."
    ]
    args = parser.parse_args(["--source-storage-addr=127.0.0.1:9090, shard1.flux-system.svc:80"])
    assert source_storage_addresses(args) == ["127.0.0.1:9090", "shard1.flux-system.svc:80"]
    assert KustomizationReconciler(kustomize_main.options_from(args)).artifacts.storage == [
        "127.0.0.1:9090",
        "shard1.flux-system.svc:80",
    ]


async def test_the_cache_refuses_before_downloading_or_reusing(tmp_path: Path) -> None:
    artifacts = Artifacts()
    server = await serve(artifacts)
    artifact = absolute(server, artifacts.add("a", {"kustomization.yaml": "resources: []\n"}))
    trusted = ArtifactCache(tmp_path / "trusted", storage=[f"{server.host}:{server.port}"])
    refusing = ArtifactCache(tmp_path / "refusing", storage=[IN_CLUSTER])
    try:
        await trusted.checkout(artifact)
        with pytest.raises(ArtifactURLRefused):
            await refusing.checkout(artifact)
        assert artifacts.requests == 1
    finally:
        await trusted.stop()
        await refusing.stop()
        await server.close()
