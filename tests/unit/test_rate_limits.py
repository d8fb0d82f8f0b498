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
    async def run() -> tuple[float, float]:
        limits = RateLimits(qps=20, burst=2)
        start = time.monotonic()
        for kind in ("configmaps", "secrets", "services", "serviceaccounts"):
            for _ in range(2):  # within each bucket's burst: no wait
                await limits.acquire(f"/api/v1/namespaces/a/{kind}")
        spread = time.monotonic() - start
        start = time.monotonic()
        for _ in range(4):  # past the burst: 1/qps each
            await limits.acquire("/api/v1/namespaces/a/configmaps/x")
        return spread, time.monotonic() - start

    spread, one_resource = asyncio.run(run())
    assert spread < 0.04
    assert one_resource >= 0.15


def test_zero_qps_is_no_limit() -> None:
    async def run() -> float:
        limits = RateLimits(qps=0, burst=1)
        start = time.monotonic()
        for _ in range(1000):
            await limits.acquire("/api/v1/configmaps")
        return time.monotonic() - start

    assert asyncio.run(run()) < 0.5
