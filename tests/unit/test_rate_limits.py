"""--kube-api-qps/burst: a bucket per API resource, as Flux's controllers (a REST client per kind)."""

from __future__ import annotations

import asyncio
import time

import pytest

from tide.shared.kube.ratelimit import RateLimits, resource_of


@pytest.mark.parametrize(
    ("path", "resource"),
    [
        ("/api/v1/namespaces/apps/configmaps/web", "v1/configmaps"),
        ("/api/v1/namespaces/apps/configmaps", "v1/configmaps"),
        ("/api/v1/configmaps?watch=true", "v1/configmaps"),
        ("/api/v1/namespaces/apps", "v1/namespaces"),
        ("/api/v1/namespaces/apps/status", "v1/namespaces"),
        ("/api/v1/namespaces/apps/finalize", "v1/namespaces"),
        ("/api/v1/namespaces", "v1/namespaces"),
        ("/apis/apps/v1/namespaces/apps/deployments/web/status", "apps/v1/deployments"),
        (
            "/apis/kustomize.toolkit.fluxcd.io/v1/kustomizations",
            "kustomize.toolkit.fluxcd.io/v1/kustomizations",
        ),
        ("/apis/rbac.authorization.k8s.io/v1/clusterroles/view", "rbac.authorization.k8s.io/v1/clusterroles"),
        ("/apis/apps/v1", "apps/v1/"),
        ("/api/v1", "v1/"),
        ("/apis", "apis"),
        ("/version", "version"),
    ],
)
def test_a_request_counts_against_its_resource(path: str, resource: str) -> None:
    assert resource_of(path) == resource


def test_resources_have_their_own_bucket_and_a_resource_is_held_to_qps() -> None:
    async def run() -> tuple[dict[str, float], float]:
        limits = RateLimits(qps=20, burst=2)
        for kind in ("configmaps", "secrets", "services", "serviceaccounts"):
            for _ in range(2):
                await limits.acquire(f"/api/v1/namespaces/a/{kind}")
        tokens = {key: bucket._tokens for key, bucket in limits._buckets.items()}
        start = time.monotonic()
        for _ in range(4):  # past the burst: 1/qps each
            await limits.acquire("/api/v1/namespaces/a/configmaps/x")
        return tokens, time.monotonic() - start

    tokens, one_resource = asyncio.run(run())
    # Each resource spent its own burst: none waited for another's.
    assert sorted(tokens) == ["v1/configmaps", "v1/secrets", "v1/serviceaccounts", "v1/services"]
    assert all(t < 1 for t in tokens.values())
    assert one_resource >= 0.15


def test_zero_qps_is_no_limit() -> None:
    limits = RateLimits(qps=0, burst=1)

    async def run() -> None:
        for _ in range(1000):
            await limits.acquire("/api/v1/configmaps")

    asyncio.run(run())
    assert limits._buckets == {}
