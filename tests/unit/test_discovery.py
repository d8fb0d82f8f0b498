"""Discovery documents: which apiVersion a kind named without one resolves to."""

from __future__ import annotations

from typing import Any

import pytest

from tide.shared.kube.client import KubeClient
from tide.shared.kube.config import Connection
from tide.shared.kube.discovery import preferred_group_versions
from tide.shared.kube.errors import KindNotServedError, KubeApiError

CORE = {"kind": "APIVersions", "versions": ["v1"]}
GROUPS = {
    "kind": "APIGroupList",
    "groups": [
        {"name": "apps", "versions": [{"groupVersion": "apps/v1", "version": "v1"}],
         "preferredVersion": {"groupVersion": "apps/v1", "version": "v1"}},
        {"name": "autoscaling",
         "versions": [{"groupVersion": "autoscaling/v2", "version": "v2"},
                      {"groupVersion": "autoscaling/v1", "version": "v1"}],
         "preferredVersion": {"groupVersion": "autoscaling/v2", "version": "v2"}},
        {"name": "example.com", "versions": [{"groupVersion": "example.com/v1beta1", "version": "v1beta1"}]},
    ],
}  # fmt: skip


def test_core_group_first_then_each_groups_preferred_version_in_server_order() -> None:
    assert preferred_group_versions(CORE, GROUPS) == [
        "v1",
        "apps/v1",
        "autoscaling/v2",
        "example.com/v1beta1",
    ]


def test_empty_documents() -> None:
    assert preferred_group_versions({}, {}) == []


class DiscoveryServer(KubeClient):
    """The discovery documents of an API server, served without a network; counts requests."""

    def __init__(self, documents: dict[str, Any]) -> None:
        super().__init__(Connection(server="https://127.0.0.1:1"))
        self.documents = documents
        self.paths: list[str] = []

    async def request(self, verb: str, method: str, path: str, **kwargs: Any) -> Any:
        self.paths.append(path)
        if path not in self.documents:
            raise KubeApiError(404, "NotFound", "the server could not find the requested resource")
        return self.documents[path]


def resources(*kinds: str) -> dict[str, Any]:
    return {"resources": [{"name": k.lower() + "s", "kind": k, "namespaced": True} for k in kinds]}


async def test_a_kind_resolves_to_its_groups_preferred_version_once() -> None:
    server = DiscoveryServer({
        "/api": CORE, "/apis": GROUPS, "/api/v1": resources("ConfigMap"),
        "/apis/apps/v1": resources("Deployment"),
        "/apis/autoscaling/v2": resources("HorizontalPodAutoscaler"),
    })  # fmt: skip
    assert await server.preferred_api_version("Deployment") == "apps/v1"
    assert await server.preferred_api_version("HorizontalPodAutoscaler") == "autoscaling/v2"
    server.paths.clear()
    assert await server.preferred_api_version("Deployment") == "apps/v1"
    assert server.paths == []  # cached


async def test_an_unknown_kind_reads_discovery_afresh_once_then_says_so() -> None:
    server = DiscoveryServer({"/api": CORE, "/apis": {"groups": []}, "/api/v1": resources("ConfigMap")})
    with pytest.raises(KindNotServedError, match="no API group serves the kind Widget"):
        await server.preferred_api_version("Widget")
    assert server.paths == ["/api", "/apis", "/api/v1"] * 2
    # A CRD installed since: found on the next look.
    server.documents["/apis"] = {"groups": [{"name": "example.com", "preferredVersion": {
        "groupVersion": "example.com/v1"}}]}  # fmt: skip
    server.documents["/apis/example.com/v1"] = resources("Widget")
    assert await server.preferred_api_version("Widget") == "example.com/v1"
