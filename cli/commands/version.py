"""`tide version`: the client's version and, from the cluster, each controller's image."""

from __future__ import annotations

import json
from importlib import metadata

import yaml

from tide.cli.errors import EXIT_OK
from tide.cli.session import Session


def client_version() -> str:
    try:
        return metadata.version("tide")
    except metadata.PackageNotFoundError:
        return "0.0.0-dev"


async def run(session: Session) -> int:
    versions: dict[str, str] = {"tide": f"v{client_version()}"}
    if not session.args.client:
        kube = await session.kube()
        deployments = await kube.list(
            "apps/v1", "Deployment", session.namespace, label_selector="app.kubernetes.io/part-of=flux"
        )
        for d in sorted(deployments, key=lambda d: d["metadata"]["name"]):
            containers = d["spec"]["template"]["spec"].get("containers") or []
            image = containers[0].get("image", "") if containers else ""
            versions[d["metadata"]["name"]] = image.rsplit(":", 1)[-1] if ":" in image else image
    output = session.args.output
    if output == "json":
        session.write(json.dumps(versions, indent=2))
    elif output == "yaml":
        session.write(yaml.safe_dump(versions, sort_keys=False))
    else:
        for name, version in versions.items():
            session.write(f"{name}: {version}")
    return EXIT_OK
