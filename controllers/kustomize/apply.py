"""Staged server-side apply under Flux's field manager, skipping what provably would not change.

Stages as Flux: CustomResourceDefinitions, Namespaces and ClusterRoles first (then wait until the CRDs
are Established), then `*Class` kinds, then custom resources, then everything else. An object is
applied only when it differs from the cluster: the live object comes from a watch cache (one per kind,
selected by the owner label), and `fields.py` decides equality without a request where it can prove it;
otherwise a server-side dry-run decides, as Flux does for every object.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from tide.controllers.kustomize.fields import Fingerprint, comparable, digest, provably_unchanged
from tide.shared.ignorerules import remove_pointer, selector_matches
from tide.shared.inventory import ObjectRef, split_api_version
from tide.shared.kube.errors import KubeApiError, KubeUnreachableError, ResourceNotFoundError
from tide.shared.kube.informer import Handler
from tide.shared.kustomize.owner import NAME_LABEL, NAMESPACE_LABEL
from tide.shared.runtime.conditions import is_condition_true

MANAGER = "kustomize-controller"
SSA_KEY = "kustomize.toolkit.fluxcd.io/ssa"
FORCE_KEY = "kustomize.toolkit.fluxcd.io/force"
RECONCILE_KEY = "kustomize.toolkit.fluxcd.io/reconcile"
PRUNE_KEY = "kustomize.toolkit.fluxcd.io/prune"

CLUSTER_DEFINITIONS = {
    ("apiextensions.k8s.io", "CustomResourceDefinition"),
    ("", "Namespace"),
    ("rbac.authorization.k8s.io", "ClusterRole"),
}
# kustomize's legacy order, used inside a stage so e.g. ServiceAccounts precede Deployments.
KIND_ORDER = [
    "Namespace",
    "ResourceQuota",
    "StorageClass",
    "CustomResourceDefinition",
    "ServiceAccount",
    "PodSecurityPolicy",
    "Role",
    "ClusterRole",
    "RoleBinding",
    "ClusterRoleBinding",
    "ConfigMap",
    "Secret",
    "Endpoints",
    "Service",
    "LimitRange",
    "PriorityClass",
    "PersistentVolume",
    "PersistentVolumeClaim",
    "Deployment",
    "StatefulSet",
    "CronJob",
    "PodDisruptionBudget",
]
KIND_LAST = ["MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"]
BUILTIN_GROUP_SUFFIXES = (".k8s.io",)
BUILTIN_GROUPS = {"", "apps", "batch", "autoscaling", "policy", "extensions"}

CacheScope = tuple[str, str, str | None]  # apiVersion, kind, namespace (None: all)

STAGE_NAMES = ["cluster definitions", "class definitions", "custom resources", "resources"]


class Kube(Protocol):  # the part of tide.shared.kube.KubeClient used here
    async def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> Any: ...
    async def apply(
        self, obj: dict[str, Any], field_manager: str, force: bool = True, dry_run: bool = False
    ) -> dict[str, Any]: ...
    async def delete(
        self,
        api_version: str,
        kind: str,
        name: str,
        namespace: str | None = None,
        propagation: str = "Background",
    ) -> bool: ...
    async def resource(self, api_version: str, kind: str) -> Any: ...
    async def patch_json(
        self, api_version: str, kind: str, name: str, namespace: str | None, operations: list[dict[str, Any]]
    ) -> dict[str, Any]: ...
    def informer(
        self, api_version: str, kind: str, namespace: str | None = None, label_selector: str | None = None
    ) -> Any: ...


class ApplyError(Exception):
    """One or more objects failed to apply; the message names each with the API server's reason."""

    def __init__(
        self, message: str, changes: ChangeSet, unreachable: KubeUnreachableError | None = None
    ) -> None:
        super().__init__(message)
        self.changes = changes
        self.unreachable = unreachable  # set when the API server stopped answering, not a refusal


# --- pure rules ------------------------------------------------------------------------------------


def _meta_value(obj: Mapping[str, Any], key: str) -> str:
    meta = obj.get("metadata") or {}
    for source in (meta.get("annotations") or {}, meta.get("labels") or {}):
        if key in source:
            return str(source[key])
    return ""


def ssa_policy(obj: Mapping[str, Any]) -> str:
    """Override (default), Merge, IfNotPresent or Ignore; `reconcile: disabled` means Ignore."""
    if _meta_value(obj, RECONCILE_KEY).lower() == "disabled":
        return "Ignore"
    value = _meta_value(obj, SSA_KEY).lower()
    return {"merge": "Merge", "ifnotpresent": "IfNotPresent", "ignore": "Ignore"}.get(value, "Override")


def force_annotated(obj: Mapping[str, Any]) -> bool:
    return _meta_value(obj, FORCE_KEY).lower() == "enabled"


def prune_disabled(obj: Mapping[str, Any]) -> bool:
    return _meta_value(obj, PRUNE_KEY).lower() == "disabled" or ssa_policy(obj) == "Ignore"


def is_custom_group(group: str) -> bool:
    return group not in BUILTIN_GROUPS and not group.endswith(BUILTIN_GROUP_SUFFIXES)


def stage_of(obj: Mapping[str, Any]) -> int:
    group, _ = split_api_version(obj.get("apiVersion", ""))
    kind = obj.get("kind", "")
    if (group, kind) in CLUSTER_DEFINITIONS:
        return 0
    if kind.endswith("Class"):
        return 1
    if is_custom_group(group):
        return 2
    return 3


def _kind_rank(kind: str) -> int:
    if kind in KIND_ORDER:
        return KIND_ORDER.index(kind)
    if kind in KIND_LAST:
        return len(KIND_ORDER) + 1 + KIND_LAST.index(kind)
    return len(KIND_ORDER)


def staged(objects: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Objects split into Flux's four apply stages, each in kustomize's kind order (stable)."""
    stages: list[list[dict[str, Any]]] = [[], [], [], []]
    for obj in objects:
        stages[stage_of(obj)].append(obj)
    return [sorted(s, key=lambda o: _kind_rank(o.get("kind", ""))) for s in stages]


def owned_by(obj: Mapping[str, Any], name: str, namespace: str) -> bool:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return labels.get(NAME_LABEL) == name and labels.get(NAMESPACE_LABEL) == namespace


def strip_ignored(obj: dict[str, Any], rules: list[Mapping[str, Any]] | None) -> dict[str, Any]:
    """spec.ignore: the listed fields are neither applied nor corrected (Flux's ignore rules)."""
    for rule in rules or []:
        if selector_matches(rule.get("target"), obj):
            for pointer in rule.get("paths") or []:
                remove_pointer(obj, pointer)
    return obj


# --- change set ------------------------------------------------------------------------------------


@dataclass
class Change:
    ref: ObjectRef
    action: str  # created | configured | unchanged | skipped | deleted
    api_version: str = ""
    generation: int | None = None

    def line(self) -> str:
        return f"{self.ref.display()} {self.action}"


@dataclass
class ChangeSet:
    entries: list[Change] = field(default_factory=list)

    def add(self, change: Change) -> None:
        self.entries.append(change)

    def changed(self) -> list[Change]:
        return [c for c in self.entries if c.action in ("created", "configured", "deleted")]

    def message(self) -> str:
        """Flux's change set text: one line per object that changed."""
        return "\n".join(c.line() for c in self.changed())

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for c in self.entries:
            out[c.action] = out.get(c.action, 0) + 1
        return out


@dataclass
class Plan:
    """One object's decision before its stage is written: a Change when nothing is to be written,
    else the write to make (the live object it replaces, kubectl's managers to take over)."""

    obj: dict[str, Any]
    change: Change | None
    live: dict[str, Any] | None = None
    takeover: list[dict[str, Any]] = field(default_factory=list)


def refusal_message(obj: Mapping[str, Any], err: KubeApiError, step: str) -> str:
    """Flux's wording: `Kind/namespace/name dry-run failed (Reason): message`."""
    name = ObjectRef.of(obj).display()
    if isinstance(err, KubeUnreachableError):
        return f"{step} interrupted: {err.message}"  # one line for the stage, not one per object
    if isinstance(err, ResourceNotFoundError):
        return (
            f'{name} {step} failed: no matches for kind "{err.kind}" in version "{err.api_version}" '
            "(the API server does not serve it; is its CustomResourceDefinition installed?)"
        )
    reason = f" ({err.reason})" if err.reason else ""
    return f"{name} {step} failed{reason}: {err.message}"


@dataclass
class StageFailures:
    """What failed in one apply stage: a line per refused object (one for a lost API server), and
    the lost connection itself, which the caller retries as unreachable rather than refused."""

    lines: list[str] = field(default_factory=list)
    unreachable: KubeUnreachableError | None = None

    def add(self, obj: Mapping[str, Any], err: KubeApiError, step: str) -> None:
        self.lines.append(refusal_message(obj, err, step))
        if isinstance(err, KubeUnreachableError) and self.unreachable is None:
            self.unreachable = err

    def error(self, changes: ChangeSet) -> ApplyError:
        return ApplyError("\n".join(sorted(set(self.lines))), changes, self.unreachable)


# --- the applier -------------------------------------------------------------------------------------


def _immutable(err: KubeApiError) -> bool:
    text = str(err).lower()
    return (err.status == 422 and ("immutable" in text or "may not change" in text)) or (
        err.status == 422 and "cannot change" in text
    )


@dataclass
class ApplyOptions:
    force: bool = False
    concurrency: int = 4
    wait_timeout: float = 60.0
    ignore: list[Mapping[str, Any]] = field(default_factory=list)
    override_managers: tuple[str, ...] = ()


# Managers whose fields Flux takes over (kubectl apply/create before Flux managed the object).
KUBECTL_MANAGERS = ("kubectl-client-side-apply", "before-first-apply")
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


def takeover_patch(live: Mapping[str, Any], managers: tuple[str, ...]) -> list[dict[str, Any]]:
    """JSON patch dropping kubectl's client-side apply managers and last-applied annotation, so the
    fields they held are ours on the next apply (Flux does this unless ssa: Merge). Empty: nothing to do."""
    meta = live.get("metadata") or {}
    entries = meta.get("managedFields") or []
    kept = [e for e in entries if e.get("manager") not in managers]
    ops: list[dict[str, Any]] = []
    if len(kept) != len(entries) and kept:
        ops.append({"op": "replace", "path": "/metadata/managedFields", "value": kept})
    if LAST_APPLIED in (meta.get("annotations") or {}):
        escaped = LAST_APPLIED.replace("~", "~0").replace("/", "~1")
        ops.append({"op": "remove", "path": f"/metadata/annotations/{escaped}"})
    return ops


class Applier:
    """Shared by all reconciles of one controller: owns the per-kind watch caches and fingerprints."""

    CACHE_SYNC_TIMEOUT = 10.0
    # A cache the identity may not list is tried again after this long (its RBAC may be granted).
    FORBIDDEN_RETRY = 60.0

    def __init__(
        self,
        kube: Kube,
        manager: str = MANAGER,
        on_change: Handler | None = None,
        namespaced_caches: bool = False,
    ) -> None:
        self.kube = kube
        self.manager = manager
        self.fingerprints: dict[tuple[str, str, str], Fingerprint] = {}
        # A tenant's identity may list only in some namespaces: one cache per kind and namespace,
        # where the controller's own identity has one per kind across all namespaces.
        self.namespaced_caches = namespaced_caches
        self._cache_broken: dict[CacheScope, float] = {}  # -> when; a forbidden list is retried
        # Told of every change the watch caches see (drift correction); added once per cache.
        self.on_change = on_change
        self._handled: set[CacheScope] = set()
        # Health waits, woken by a change of an object they wait for (see changes_of).
        self._waiters: dict[ObjectRef, set[asyncio.Event]] = {}

    # live objects ------------------------------------------------------------------------------

    async def cache_for(self, api_version: str, kind: str, namespace: str | None = None) -> Any | None:
        scope: CacheScope = (api_version, kind, (namespace or None) if self.namespaced_caches else None)
        broken = self._cache_broken.get(scope)
        if broken is not None:
            if broken == float("inf") or time.monotonic() - broken < self.FORBIDDEN_RETRY:
                return None
            del self._cache_broken[scope]
        informer = self.kube.informer(api_version, kind, namespace=scope[2], label_selector=NAME_LABEL)
        if scope not in self._handled:
            self._handled.add(scope)
            informer.add_handler(self._wake)
            if self.on_change is not None:
                informer.add_handler(self.on_change)
        if getattr(informer, "synced", True):
            return informer
        try:
            listed = await informer.wait_listed(self.CACHE_SYNC_TIMEOUT)
        except TimeoutError:
            self._cache_broken[scope] = float("inf")
            return None
        if not listed:  # forbidden for this identity: read objects one by one (or be refused)
            self._cache_broken[scope] = time.monotonic()
            await informer.stop()
            return None
        return informer

    def _wake(self, event_type: str, obj: dict[str, Any], old: dict[str, Any] | None) -> None:
        if self._waiters:
            for event in self._waiters.get(ObjectRef.of(obj), ()):
                event.set()

    @contextlib.contextmanager
    def changes_of(self, refs: Iterable[ObjectRef]) -> Iterator[asyncio.Event]:
        """An event the watch caches set when one of these objects changes: a health wait reads
        the status again at once instead of at its next poll."""
        event = asyncio.Event()
        keys = set(refs)
        for ref in keys:
            self._waiters.setdefault(ref, set()).add(event)
        try:
            yield event
        finally:
            for ref in keys:
                waiting = self._waiters.get(ref)
                if waiting is not None:
                    waiting.discard(event)
                    if not waiting:
                        del self._waiters[ref]

    async def live(self, obj: Mapping[str, Any], owned_only: bool = False) -> dict[str, Any] | None:
        """The object from the watch cache of objects carrying our owner label. An object missing
        there may still exist without the label (created by someone else, or by a Helm release):
        unless owned_only, read it from the API then."""
        meta = obj.get("metadata") or {}
        cache = await self.cache_for(obj["apiVersion"], obj["kind"], meta.get("namespace"))
        if cache is not None:
            cached = cache.get(meta.get("namespace") or "", meta["name"])
            if cached is not None:
                found: dict[str, Any] = copy.deepcopy(cached)
                return found
            if owned_only:
                return None
        result = await self.kube.get(obj["apiVersion"], obj["kind"], meta["name"], meta.get("namespace"))
        return result if isinstance(result, dict) else None

    async def normalize(self, obj: dict[str, Any]) -> None:
        """Namespace from the API's scope: default for namespaced objects without one, none for
        cluster-scoped ones (kustomize sets `namespace:` on unknown cluster-scoped kinds too)."""
        info = await self.kube.resource(obj["apiVersion"], obj["kind"])
        meta = obj.setdefault("metadata", {})
        if getattr(info, "namespaced", True):
            meta.setdefault("namespace", "default")
            if not meta["namespace"]:
                meta["namespace"] = "default"
        else:
            meta.pop("namespace", None)

    # one object ---------------------------------------------------------------------------------

    def _key(self, obj: Mapping[str, Any]) -> tuple[str, str, str]:
        return (obj["apiVersion"], ObjectRef.of(obj).id, self.manager)

    def fingerprint_of(self, obj: Mapping[str, Any]) -> Fingerprint | None:
        """What our last apply of the object left, None when this process has not applied it."""
        return self.fingerprints.get(self._key(obj))

    def forget(self, api_version: str, ref: ObjectRef) -> None:
        """Before we delete an object: its deletion is not drift."""
        self.fingerprints.pop((api_version, ref.id, self.manager), None)

    async def plan_one(self, obj: dict[str, Any], options: ApplyOptions) -> Plan:
        """Decide without writing: skipped, unchanged (proved from the cache, or by a dry-run that
        equals the live object), or a write whose dry-run the API server accepted. A refusal raises
        KubeApiError, before anything of the stage is written."""
        ref = ObjectRef.of(obj)
        policy = ssa_policy(obj)
        if policy == "Ignore":
            return Plan(obj, Change(ref, "skipped", obj["apiVersion"]))
        # Not in our cache means new, or not yet labelled by us: applying creates or adopts it
        # either way, so only IfNotPresent needs to ask the API.
        live = await self.live(obj, owned_only=policy != "IfNotPresent")
        if live is not None and policy == "IfNotPresent":
            return Plan(obj, Change(ref, "skipped", obj["apiVersion"], _generation(live)))
        takeover: list[dict[str, Any]] = []
        if live is not None and policy != "Merge":
            takeover = takeover_patch(live, KUBECTL_MANAGERS + tuple(options.override_managers))
        desired_digest = digest(obj)
        key = self._key(obj)
        if live is not None and not takeover:
            record = self.fingerprints.get(key)
            if record is not None and record.matches(desired_digest, live, self.manager):
                return Plan(obj, Change(ref, "unchanged", obj["apiVersion"], _generation(live)))
            if provably_unchanged(obj, live, self.manager):
                self._remember(key, desired_digest, live)
                return Plan(obj, Change(ref, "unchanged", obj["apiVersion"], _generation(live)))
        # The dry-run validates the object, as Flux does for every object it has to write.
        dry = await self._apply(obj, options, dry_run=True)
        if live is not None and comparable(dry) == comparable(live):
            if not takeover:
                self._remember(key, desired_digest, dry)
                return Plan(obj, Change(ref, "unchanged", obj["apiVersion"], _generation(live)))
        return Plan(obj, None, live, takeover)

    async def write(self, plan: Plan, options: ApplyOptions) -> Change:
        """Carry out a planned write: kubectl's managers taken over, then the server-side apply."""
        obj, live = plan.obj, plan.live
        if plan.takeover:
            meta = obj["metadata"]
            live = await self.kube.patch_json(
                obj["apiVersion"], obj["kind"], meta["name"], meta.get("namespace"), plan.takeover
            )
        key = self._key(obj)
        desired_digest = digest(obj)
        if live is not None and plan.takeover:
            # Only kubectl's ownership was in the way: the content is already what Git says.
            if provably_unchanged(obj, live, self.manager):
                self._remember(key, desired_digest, live)
                return Change(ObjectRef.of(obj), "unchanged", obj["apiVersion"], _generation(live))
        result = await self._apply(obj, options, dry_run=False)
        self._remember(key, desired_digest, result)
        return Change(
            ObjectRef.of(obj),
            "created" if live is None else "configured",
            obj["apiVersion"],
            _generation(result),
        )

    def _remember(self, key: tuple[str, str, str], desired_digest: str, result: Mapping[str, Any]) -> None:
        fp = Fingerprint.of(desired_digest, result, self.manager)
        if fp is None:
            self.fingerprints.pop(key, None)
        else:
            self.fingerprints[key] = fp

    async def _apply(self, obj: dict[str, Any], options: ApplyOptions, dry_run: bool) -> dict[str, Any]:
        try:
            return await self.kube.apply(obj, field_manager=self.manager, force=True, dry_run=dry_run)
        except KubeApiError as err:
            if _immutable(err) and (options.force or force_annotated(obj)):
                if dry_run:
                    return {}  # differs from live: the real apply recreates it
                await self._recreate(obj, options)
                return await self.kube.apply(obj, field_manager=self.manager, force=True)
            raise

    async def _recreate(self, obj: dict[str, Any], options: ApplyOptions) -> None:
        meta = obj["metadata"]
        await self.kube.delete(
            obj["apiVersion"], obj["kind"], meta["name"], meta.get("namespace"), propagation="Foreground"
        )
        deadline = time.monotonic() + options.wait_timeout
        while time.monotonic() < deadline:
            if (
                await self.kube.get(obj["apiVersion"], obj["kind"], meta["name"], meta.get("namespace"))
                is None
            ):
                return
            await asyncio.sleep(0.5)

    # all objects -----------------------------------------------------------------------------------

    async def apply_all(self, objects: list[dict[str, Any]], options: ApplyOptions) -> ChangeSet:
        """Flux's staged apply, all or nothing per stage: every object of a stage is validated
        (proved unchanged, or dry-run) before any of it is written. A refusal fails the stage with
        nothing of it written; the ApplyError carries what earlier stages changed."""
        changes = ChangeSet()
        semaphore = asyncio.Semaphore(max(1, options.concurrency))
        for index, stage in enumerate(staged(objects)):
            if not stage:
                continue
            failures = StageFailures()

            async def plan(obj: dict[str, Any], failures: StageFailures = failures) -> Plan | None:
                async with semaphore:
                    try:
                        await self.normalize(obj)
                        strip_ignored(obj, options.ignore)
                        return await self.plan_one(obj, options)
                    except KubeApiError as err:
                        failures.add(obj, err, "dry-run")
                        return None

            plans = await asyncio.gather(*(plan(o) for o in stage))
            if failures.lines:
                raise failures.error(changes)

            async def write(item: Plan, failures: StageFailures = failures) -> Change | None:
                async with semaphore:
                    try:
                        return await self.write(item, options)
                    except KubeApiError as err:
                        failures.add(item.obj, err, "apply")
                        return None

            pending = [p for p in plans if p is not None and p.change is None]
            written = iter(await asyncio.gather(*(write(p) for p in pending)))
            for item in plans:
                assert item is not None
                change = item.change if item.change is not None else next(written)
                if change is not None:
                    changes.add(change)
            if failures.lines:
                raise failures.error(changes)
            if index == 0:
                await self.wait_for_crds(stage, options.wait_timeout)
        return changes

    async def wait_for_crds(self, stage: list[dict[str, Any]], limit: float) -> None:
        crds = [o for o in stage if o.get("kind") == "CustomResourceDefinition"]
        if not crds:
            return
        timeout = limit
        deadline = time.monotonic() + limit
        for crd in crds:
            name = crd["metadata"]["name"]
            while True:
                live = await self.kube.get(crd["apiVersion"], "CustomResourceDefinition", name)
                if live and is_condition_true(live, "Established"):
                    break
                if time.monotonic() > deadline:
                    raise ApplyError(
                        f"CustomResourceDefinition/{name} not Established after {timeout:g}s", ChangeSet()
                    )
                await asyncio.sleep(0.5)
        invalidate = getattr(self.kube, "invalidate_discovery", None)
        if invalidate is not None:
            invalidate()


def _generation(obj: Mapping[str, Any]) -> int | None:
    value = (obj.get("metadata") or {}).get("generation")
    return int(value) if isinstance(value, int) else None
