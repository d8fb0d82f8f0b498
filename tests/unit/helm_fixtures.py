"""Helm release Secrets shaped as Helm v4 stores them, for the helm controller's unit tests."""

from __future__ import annotations

import base64
from typing import Any

from tide.controllers.helm.go_encoding import GoStruct
from tide.controllers.helm.storage import StoredRelease, encode_release, release_from_secret

DEPLOYED_AT = "2026-11-30T10:00:00.123456789Z"


def helm_test_hook(name: str, phase: str | None = None) -> GoStruct:
    hook = GoStruct(
        name=name,
        kind="Pod",
        path=f"chart/templates/tests/{name}.yaml",
        manifest=f"apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n",
        events=["test"],
        last_run=GoStruct(),
    )
    if phase:
        hook["last_run"] = GoStruct(
            started_at="2026-11-30T10:01:00.5Z", completed_at="2026-11-30T10:01:02Z", phase=phase
        )
    else:
        hook["last_run"] = GoStruct(phase="")
    return hook


def release_json(
    name: str = "app",
    namespace: str = "apps",
    version: int = 1,
    status: str = "deployed",
    chart: str = "demo",
    chart_version: str = "1.0.0",
    config: dict[str, Any] | None = None,
    hooks: list[GoStruct] | None = None,
) -> GoStruct:
    info = GoStruct(first_deployed=DEPLOYED_AT, last_deployed=DEPLOYED_AT, description="Install complete")
    info["status"] = status
    metadata = GoStruct(name=chart, version=chart_version, description="A chart", apiVersion="v2")
    metadata["appVersion"] = "2.0"
    metadata["type"] = "application"
    release = GoStruct(name=name, info=info)
    release["chart"] = GoStruct(metadata=metadata, templates=[], values=GoStruct())
    if config:
        release["config"] = config
    release["manifest"] = "---\n# Source: demo/templates/cm.yaml\napiVersion: v1\nkind: ConfigMap\n"
    if hooks:
        release["hooks"] = hooks
    release["version"] = version
    release["namespace"] = namespace
    release["apply_method"] = "ssa"
    return release


def release_secret(release: GoStruct, storage_namespace: str = "apps", resource_version: str = "1") -> dict:
    name, version = release["name"], release["version"]
    encoded = encode_release(release)
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "helm.sh/release.v1",
        "metadata": {
            "name": f"sh.helm.release.v1.{name}.v{version}",
            "namespace": storage_namespace,
            "resourceVersion": resource_version,
            "labels": {
                "name": name,
                "owner": "helm",
                "status": release["info"]["status"],
                "version": str(version),
            },
        },
        "data": {"release": base64.b64encode(encoded.encode()).decode()},
    }


def stored(**kw: Any) -> StoredRelease:
    return release_from_secret(release_secret(release_json(**kw)))
