"""Drift detection and correction of a release's objects, as helm-controller does it.

Detection: each object of the stored release's manifest (with the metadata Helm sets on it, in
the release's namespace when namespaced) is server-side applied as a dry-run under the field
manager `helm-controller`; the result is compared with the live object. A missing object is a
`create` diff, a different one an `update` diff with the JSON patch from live to desired; the
`helm.toolkit.fluxcd.io/driftDetection: disabled` label or annotation (on the manifest or the live
object) and an ignore rule for the whole object (`""`) exclude it; other ignore rules' JSON
pointers are removed from both sides first. Labels and annotations count only when added or
changed (controllers add their own), `metadata` otherwise and `status` never.

Correction (mode `enabled`): missing objects are created and drifted ones patched with their
JSON patch, so ignored fields are left alone; never a Helm upgrade.

The comparison is pure (`object_diff`, table-tested); `detect` and `correct` do the requests.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import yaml

from tide.shared.api.helm import IgnoreRule
from tide.shared.ignorerules import SelectorInvalid, escape, remove_pointer, selector_matches
from tide.shared.inventory import ObjectRef
from tide.shared.kube import KubeClient
from tide.shared.kube.errors import KubeApiError, ResourceNotFoundError

MANAGER = "helm-controller"
DRIFT_KEY = "helm.toolkit.fluxcd.io/driftDetection"
DISABLED = "disabled"
MANAGED_BY = "app.kubernetes.io/managed-by"
RELEASE_NAME = "meta.helm.sh/release-name"
RELEASE_NAMESPACE = "meta.helm.sh/release-namespace"
CONCURRENCY = 8
"""Objects diffed at once by the controller, all releases together (the reconciler shares one bound):
each dry-run in flight holds a connection of its own."""


class DiffType(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    EXCLUDE = "exclude"
    NONE = "none"


@dataclass
class ObjectDiff:
    type: DiffType
    desired: dict[str, Any]
    patch: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ref(self) -> ObjectRef:
        return ObjectRef.of(self.desired)

    def summary(self) -> str | None:
        """Flux's one line for this object (None for an unchanged one)."""
        name = self.ref.display()
        if self.type is DiffType.CREATE:
            return f"{name} removed"
        if self.type is DiffType.EXCLUDE:
            return f"{name} excluded"
        if self.type is DiffType.UPDATE:
            count = {op: sum(1 for p in self.patch if p["op"] == op) for op in ("add", "replace", "remove")}
            return (
                f"{name} changed ({count['add']} additions, {count['replace']} changes, "
                f"{count['remove']} removals)"
            )
        return None


@dataclass
class DriftReport:
    """All objects' diffs, and the objects that could not be diffed."""

    diffs: list[ObjectDiff] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def has_changes(self) -> bool:
        return any(d.type in (DiffType.CREATE, DiffType.UPDATE) for d in self.diffs)

    def summary(self) -> str:
        return "\n".join(line for d in self.diffs if (line := d.summary()))

    def brief(self) -> str:
        count = {t: sum(1 for d in self.diffs if d.type is t) for t in DiffType}
        return (
            f"removed: {count[DiffType.CREATE]}, changed: {count[DiffType.UPDATE]}, "
            f"excluded: {count[DiffType.EXCLUDE]}"
        )


class DriftError(Exception):
    """The cluster state could not be compared with the release at all."""


# --- the pure part --------------------------------------------------------------------------------


_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def manifest_documents(text: str) -> list[Any]:
    """The YAML documents of a manifest. Release storage is tenant-writable: a manifest with YAML
    aliases (a bomb) is refused. Both passes run in libyaml: the alias check reads the parser's
    events, then the documents are loaded (the pure-Python composer it replaces, overridden to
    refuse aliases, cost a twelfth of the controller's CPU at 100 installs)."""
    for event in yaml.parse(text, Loader=_Loader):
        if isinstance(event, yaml.AliasEvent):
            raise yaml.YAMLError("YAML aliases are not allowed in a release manifest")
    return list(yaml.load_all(text, Loader=_Loader))


def manifest_objects(manifest: str) -> list[dict[str, Any]]:
    """The named objects of a manifest, the items of a `*List` expanded."""
    objects: list[dict[str, Any]] = []
    for doc in manifest_documents(manifest):
        if not isinstance(doc, dict) or not doc.get("kind"):
            continue
        items = doc.get("items") if str(doc["kind"]).endswith("List") else None
        for obj in items if isinstance(items, list) else [doc]:
            if not isinstance(obj, dict) or not isinstance(obj.get("apiVersion"), str):
                continue
            if not isinstance(obj.get("metadata"), dict) or not obj["metadata"].get("name"):
                continue
            objects.append(obj)
    return objects


def release_objects(manifest: str, release_name: str, release_namespace: str) -> list[dict[str, Any]]:
    """The objects of a release manifest with the metadata Helm sets when it creates them."""
    objects = manifest_objects(manifest)
    for obj in objects:
        meta = obj["metadata"]
        meta["labels"] = {**(meta.get("labels") or {}), MANAGED_BY: "Helm"}
        meta["annotations"] = {
            **(meta.get("annotations") or {}),
            RELEASE_NAME: release_name,
            RELEASE_NAMESPACE: release_namespace,
        }
    return objects


def excluded(obj: Mapping[str, Any] | None) -> bool:
    """The opt-out label or annotation."""
    meta = (obj or {}).get("metadata") or {}
    return any((meta.get(k) or {}).get(DRIFT_KEY) == DISABLED for k in ("labels", "annotations"))


def ignored_paths(rules: Sequence[IgnoreRule], obj: Mapping[str, Any]) -> list[str]:
    """The JSON pointers the ignore rules remove from this object (`""`: all of it)."""
    paths: list[str] = []
    for rule in rules:
        target = rule.target.model_dump(by_alias=True, exclude_none=True) if rule.target else None
        if selector_matches(target, obj):
            paths.extend(rule.paths)
    return paths


def _same(a: Any, b: Any) -> bool:
    # JSON's types: 1 and True, or 1 and 1.0 from different decoders, are told apart by kind.
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    return bool(a == b)


def json_diff(src: Any, dst: Any, path: str = "") -> list[dict[str, Any]]:
    """An RFC 6902 patch that turns `src` into `dst` (objects by key, arrays by index)."""
    if isinstance(src, dict) and isinstance(dst, dict):
        ops: list[dict[str, Any]] = []
        for key in src:
            if key not in dst:
                ops.append({"op": "remove", "path": f"{path}/{escape(key)}"})
        for key, value in dst.items():
            child = f"{path}/{escape(key)}"
            if key in src:
                ops.extend(json_diff(src[key], value, child))
            else:
                ops.append({"op": "add", "path": child, "value": value})
        return ops
    if isinstance(src, list) and isinstance(dst, list):
        ops = []
        for i in range(min(len(src), len(dst))):
            ops.extend(json_diff(src[i], dst[i], f"{path}/{i}"))
        for i in range(len(src), len(dst)):
            ops.append({"op": "add", "path": f"{path}/{i}", "value": dst[i]})
        for i in reversed(range(len(dst), len(src))):
            ops.append({"op": "remove", "path": f"{path}/{i}"})
        return ops
    if type(src) is type(dst) and _same(src, dst):
        return []
    if isinstance(src, int | float) and isinstance(dst, int | float) and _same(src, dst):
        return []
    return [{"op": "replace", "path": path, "value": dst}]


def _labels_and_annotations(obj: Mapping[str, Any]) -> dict[str, Any]:
    meta = obj.get("metadata") or {}
    # The name keeps `metadata` present, so a patch never adds (replaces) all of it.
    return {"metadata": {k: meta[k] for k in ("name", "labels", "annotations") if k in meta}}


def _body(obj: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k not in ("metadata", "status")}


def object_diff(
    desired: dict[str, Any],
    live: dict[str, Any] | None,
    dry_run: dict[str, Any] | None,
    paths: Sequence[str] = (),
) -> ObjectDiff:
    """One object's drift from the live object to its dry-run apply (both before ignore rules)."""
    if excluded(desired) or "" in paths:
        return ObjectDiff(DiffType.EXCLUDE, desired)
    if live is None:
        return ObjectDiff(DiffType.CREATE, desired)
    if excluded(live):
        return ObjectDiff(DiffType.EXCLUDE, desired)
    if dry_run is None:
        return ObjectDiff(DiffType.CREATE, desired)
    # Ignore rules cut the objects: copies then; without rules the diff only reads them.
    have, want = (yaml_copy(live), yaml_copy(dry_run)) if paths else (live, dry_run)
    for pointer in paths:
        remove_pointer(have, pointer)
        remove_pointer(want, pointer)
    patch = [
        op
        for op in json_diff(_labels_and_annotations(have), _labels_and_annotations(want))
        if op["op"] in ("add", "replace")
    ]
    patch += json_diff(_body(have), _body(want))
    return ObjectDiff(DiffType.UPDATE if patch else DiffType.NONE, desired, patch)


def yaml_copy(obj: Mapping[str, Any]) -> dict[str, Any]:
    """A deep copy of a JSON-like object."""
    out: dict[str, Any] = _copy(obj)
    return out


def _copy(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def correction_report(
    release: str, changes: Sequence[str], errors: Sequence[str]
) -> tuple[str, str, str] | None:
    """Flux's Event after a correction: (type, reason, message), or None when nothing was done."""
    if errors:
        partially = "partially " if changes else ""
        message = f"Failed to {partially}correct cluster state of release {release}:\n" + "\n".join(errors)
        if changes:
            message += "\n\nSuccessful corrections:\n" + "\n".join(changes)
        return "Warning", "DriftCorrectionFailed", message
    if changes:
        return (
            "Normal",
            "DriftCorrected",
            f"Cluster state of release {release} has been corrected:\n" + "\n".join(changes),
        )
    return None


def detected_message(release: str, report: DriftReport) -> str:
    return f"Cluster state of release {release} has drifted from the desired state:\n{report.summary()}"


def masked_reason(kind: str, message: str) -> str:
    # A Secret's rejected patch may quote its data: keep only the reason, as Flux does.
    if kind == "Secret" and ":" in message:
        return message.rsplit(":", 1)[1].strip()
    return message


# --- the requests ---------------------------------------------------------------------------------


async def detect(
    kube: KubeClient,
    manifest: str,
    release_name: str,
    release_namespace: str,
    rules: Sequence[IgnoreRule],
    limit: asyncio.Semaphore | None = None,
) -> DriftReport:
    """Diff every object of the release against the cluster. Objects that fail are listed in
    `errors`; DriftError when none could be diffed for a reason that is not per object."""
    report = DriftReport()
    try:
        objects = await asyncio.to_thread(release_objects, manifest, release_name, release_namespace)
    except yaml.YAMLError as err:
        raise DriftError(f"failed to read objects from release manifest: {err}") from err
    slots = limit or asyncio.Semaphore(CONCURRENCY)

    async def one(obj: dict[str, Any]) -> ObjectDiff | str:
        async with slots:
            try:
                return await _diff_one(kube, obj, release_namespace, rules)
            except SelectorInvalid as err:
                return f"invalid ignore rule: {err}"
            except ResourceNotFoundError:
                kind, api_version = obj.get("kind"), obj.get("apiVersion")
                return f"failed to determine if {kind} is namespace scoped: no matches for {api_version}"
            except KubeApiError as err:
                reason = masked_reason(str(obj.get("kind")), str(err))
                return f"{ObjectRef.of(obj).display()} dry-run failed: {reason}"

    for result in await asyncio.gather(*(one(o) for o in objects)):
        if isinstance(result, str):
            report.errors.append(result)
        else:
            report.diffs.append(result)
    return report


async def _diff_one(
    kube: KubeClient, obj: dict[str, Any], release_namespace: str, rules: Sequence[IgnoreRule]
) -> ObjectDiff:
    meta = obj["metadata"]
    info = await kube.resource(obj["apiVersion"], obj["kind"])
    if info.namespaced and not meta.get("namespace"):
        meta["namespace"] = release_namespace
    paths = ignored_paths(rules, obj)
    if excluded(obj) or "" in paths:
        return object_diff(obj, None, None, paths)
    live = await kube.get(obj["apiVersion"], obj["kind"], meta["name"], meta.get("namespace"))
    if live is None or excluded(live):
        return object_diff(obj, live, None, paths)
    dry_run = await kube.apply(yaml_copy(obj), field_manager=MANAGER, force=True, dry_run=True)
    return object_diff(obj, live, dry_run, paths)


async def correct(kube: KubeClient, report: DriftReport) -> tuple[list[str], list[str]]:
    """Create the missing objects, patch the drifted ones: (change lines, error lines)."""
    changes: list[str] = []
    errors: list[str] = []
    creates = sorted((d for d in report.diffs if d.type is DiffType.CREATE), key=_order)
    updates = sorted((d for d in report.diffs if d.type is DiffType.UPDATE), key=_order)
    for diff in creates:
        name = diff.ref.display()
        try:
            await kube.create(yaml_copy(diff.desired), field_manager=MANAGER)
        except KubeApiError as err:
            errors.append(f"{name} creation failure: {masked_reason(diff.ref.kind, str(err))}")
            continue
        changes.append(f"{name} created")
    for diff in updates:
        name, meta = diff.ref.display(), diff.desired["metadata"]
        try:
            await kube.patch_json(
                diff.desired["apiVersion"],
                diff.desired["kind"],
                meta["name"],
                meta.get("namespace"),
                diff.patch,
                field_manager=MANAGER,
            )
        except KubeApiError as err:
            errors.append(f"{name} patch failure: {masked_reason(diff.ref.kind, str(err))}")
            continue
        changes.append(f"{name} configured")
    return changes, errors


_FIRST = {"CustomResourceDefinition": 0, "Namespace": 1}


def _order(diff: ObjectDiff) -> tuple[int, str, str, str, str]:
    ref = diff.ref
    return (_FIRST.get(ref.kind, 2), ref.group, ref.kind, ref.namespace, ref.name)
