"""Discovery documents: which apiVersion a kind named without one resolves to."""

from __future__ import annotations

from tide.shared.kube.discovery import preferred_group_versions

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
