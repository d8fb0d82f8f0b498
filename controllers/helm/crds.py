"""The chart's CRDs (its `crds/` and its subcharts'), applied by the controller before Helm runs,
as helm-controller does for `install.crds` / `upgrade.crds`:

- `Skip`: nothing is applied (Helm runs with SkipCRDs, always).
- `Create`: CRDs that do not exist are created; existing ones are left as they are.
- `CreateReplace`: every CRD is created or updated (server-side apply, conflicts forced).

Only CustomResourceDefinitions are applied (anything else under `crds/` is ignored, as Flux
does), under the field manager `helm-controller` with the origin labels; what was written is
waited for until Established (60 s, Flux's) before the release goes on. CRDs are never deleted.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from tide.controllers.helm.drift import MANAGER, manifest_documents
from tide.controllers.helm.postrender import ORIGIN_GROUP
from tide.shared.kube import KubeClient
from tide.shared.kube.errors import KubeApiError

log = logging.getLogger(__name__)

CRD_API = "apiextensions.k8s.io/v1"
ESTABLISH_TIMEOUT = 60.0
POLL = 0.25


class CRDError(Exception):
    """The chart's CRDs could not be read, applied or established."""


def chart_crds(files: Sequence[Mapping[str, str]]) -> tuple[list[dict[str, Any]], list[str]]:
    """The CRD objects of the chart's crds/ files (as Helm lists them), and the other objects
    found there (ignored, named for a log line)."""
    crds: list[dict[str, Any]] = []
    others: list[str] = []
    for file in files:
        try:
            documents = manifest_documents(str(file.get("data", "")))
        except yaml.YAMLError as err:
            what = file.get("name")
            raise CRDError(f"failed to parse CustomResourceDefinitions from {what}: {err}") from err
        for doc in documents:
            if not isinstance(doc, dict) or not doc:
                continue
            group = str(doc.get("apiVersion", "")).partition("/")[0]
            name = (doc.get("metadata") or {}).get("name")
            if group == "apiextensions.k8s.io" and doc.get("kind") == "CustomResourceDefinition" and name:
                crds.append(doc)
            else:
                others.append(f"{group}/{doc.get('kind')}/{name}")
    return crds, others


def with_origin(crd: dict[str, Any], name: str, namespace: str) -> dict[str, Any]:
    meta = crd.setdefault("metadata", {})
    meta["labels"] = {
        **(meta.get("labels") or {}),
        f"{ORIGIN_GROUP}/name": name,
        f"{ORIGIN_GROUP}/namespace": namespace,
    }
    return crd


def established(crd: Mapping[str, Any] | None) -> bool:
    conditions = ((crd or {}).get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Established" and c.get("status") == "True" for c in conditions)


async def apply_crds(
    kube: KubeClient, policy: str, crds: Sequence[dict[str, Any]], within: float = ESTABLISH_TIMEOUT
) -> list[str]:
    """Apply the CRDs with the policy and wait until those written are Established: their names."""
    if policy == "Skip" or not crds:
        return []
    written: list[str] = []
    for crd in crds:
        name = str(crd["metadata"]["name"])
        api_version = str(crd.get("apiVersion") or CRD_API)
        try:
            if policy == "Create" and await kube.get(api_version, "CustomResourceDefinition", name):
                continue  # already present: Create leaves it alone
            await kube.apply(crd, field_manager=MANAGER, force=True)
        except KubeApiError as err:
            verb = "create" if policy == "Create" else "update"
            raise CRDError(f"failed to {verb} CustomResourceDefinition {name}: {err}") from err
        written.append(name)
    await _wait_established(kube, written, within)
    if written:
        kube.invalidate_discovery()  # the new kinds are served now
        log.info("applied %d CustomResourceDefinition(s) with policy %s", len(written), policy)
    return written


async def _wait_established(kube: KubeClient, names: Sequence[str], within: float) -> None:
    deadline = time.monotonic() + within
    pending = list(names)
    while pending:
        try:
            found = [await kube.get(CRD_API, "CustomResourceDefinition", n) for n in pending]
        except KubeApiError as err:
            raise CRDError(f"failed to wait for CustomResourceDefinition(s): {err}") from err
        pending = [n for n, crd in zip(pending, found, strict=True) if not established(crd)]
        if not pending:
            return
        if time.monotonic() >= deadline:
            raise CRDError(
                "failed to wait for CustomResourceDefinition(s): not Established after "
                f"{within:g}s: {', '.join(pending)}"
            )
        await asyncio.sleep(POLL)
