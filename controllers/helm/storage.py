"""Helm's release storage read natively: observe the latest release, snapshot it, unlock it.

Helm keeps each release revision in a Secret `sh.helm.release.v1.<name>.v<revision>` of type
`helm.sh/release.v1` in the storage namespace, labelled owner=helm, name, status, version; its
`release` key holds base64(gzip(JSON of Helm's Release struct)). Tide reads these Secrets itself
(the Helm SDK is not needed to observe), so determining a release's state costs one list.

The snapshot digest is Flux's: sha256 of Go's `encoding/json` of helm-controller's Observation
(name, version, info, chart metadata, config, manifest, hooks without test hooks, namespace,
ociDigest), rebuilt here field by field in the Go structs' order, so a HelmRelease status written
by Flux verifies under Tide and the reverse.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import gzip
import hashlib
import json
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tide.controllers.helm.go_encoding import GoStruct, go_json
from tide.controllers.helm.values import config_digest
from tide.shared.api.helm import Filter, ReleaseSnapshot, TestHookStatus
from tide.shared.helm_storage import decode_release_json
from tide.shared.kube.client import KubeClient
from tide.shared.kube.errors import KubeApiError

RELEASE_SECRET_TYPE = "helm.sh/release.v1"
SNAPSHOT_API_VERSION = "v2"
PENDING_STATUSES = frozenset({"pending-install", "pending-upgrade", "pending-rollback"})


class StorageError(Exception):
    """Helm's release storage cannot be read or written."""


class ReleaseDecodeError(StorageError):
    """A release Secret does not hold a release Helm could have written."""


class ReleaseLockLost(StorageError):
    """The release changed while it was being unlocked (another writer got there first)."""


def decode_release(encoded: str | bytes) -> GoStruct:
    """Helm's decodeRelease: base64, gzip when it starts with gzip's magic, then JSON."""
    try:
        release = decode_release_json(encoded, object_pairs_hook=GoStruct)
    except (binascii.Error, OSError, EOFError, ValueError) as err:
        raise ReleaseDecodeError(f"release data cannot be decoded: {err}") from err
    if not isinstance(release, GoStruct) or not isinstance(release.get("name"), str):
        raise ReleaseDecodeError("release data is not a Helm release")
    return release


def encode_release(release: Mapping[str, Any]) -> str:
    """Helm's encodeRelease: JSON (as Go wrote it), gzip at best compression, base64."""
    return base64.b64encode(gzip.compress(go_json(release).encode(), compresslevel=9, mtime=0)).decode()


@dataclass(frozen=True)
class StoredRelease:
    """One release revision as Helm stored it, and the Secret that holds it."""

    release: GoStruct
    secret: Mapping[str, Any]

    @property
    def name(self) -> str:
        return str(self.release.get("name", ""))

    @property
    def namespace(self) -> str:
        return str(self.release.get("namespace", ""))

    @property
    def version(self) -> int:
        return int(self.release.get("version") or 0)

    @property
    def info(self) -> Mapping[str, Any]:
        return self.release.get("info") or {}

    @property
    def status(self) -> str:
        return str(self.info.get("status", ""))

    @property
    def server_side_applied(self) -> bool:
        """Helm 4 records how it applied a release; a release of Helm 3 (none) was client-side."""
        return self.release.get("apply_method") == "ssa"

    @property
    def is_pending(self) -> bool:
        return self.status in PENDING_STATUSES

    @property
    def chart_metadata(self) -> Mapping[str, Any]:
        return (self.release.get("chart") or {}).get("metadata") or {}

    @property
    def chart_name(self) -> str:
        return str(self.chart_metadata.get("name", ""))

    @property
    def chart_version(self) -> str:
        return str(self.chart_metadata.get("version", ""))

    @property
    def config(self) -> dict[str, Any]:
        return dict(self.release.get("config") or {})

    @property
    def manifest(self) -> str:
        return str(self.release.get("manifest", ""))

    @property
    def hooks(self) -> list[Mapping[str, Any]]:
        return [h for h in self.release.get("hooks") or [] if isinstance(h, Mapping)]

    def full_name(self) -> str:
        return f"{self.namespace}/{self.name}.v{self.version}"

    def test_hooks(self, filters: Sequence[Filter] = ()) -> dict[str, TestHookStatus]:
        """Flux's TestHooksFromRelease: the test hooks the filters select, with their last run."""
        hooks: dict[str, TestHookStatus] = {}
        for hook in self.hooks:
            if "test" not in (hook.get("events") or []) or not _test_selected(str(hook.get("name")), filters):
                continue
            run = hook.get("last_run") or {}
            hooks[str(hook.get("name"))] = TestHookStatus(
                last_started=_metav1_time(run.get("started_at")),
                last_completed=_metav1_time(run.get("completed_at")),
                phase=run.get("phase") or None,
            )
        return hooks


def _test_selected(name: str, filters: Sequence[Filter]) -> bool:
    has_include = included = False
    for f in filters:
        if f.exclude:
            if f.name == name:
                return False
            continue
        has_include = True
        included = included or f.name == name
    return not has_include or included


def release_from_secret(secret: Mapping[str, Any]) -> StoredRelease:
    encoded = (secret.get("data") or {}).get("release")
    if not encoded:
        name = (secret.get("metadata") or {}).get("name")
        raise ReleaseDecodeError(f"release Secret {name} has no release data")
    return StoredRelease(decode_release(base64.b64decode(encoded)), secret)


def release_selector(name: str) -> str:
    return f"owner=helm,name={name}"


def latest_release(secrets: Iterable[Mapping[str, Any]], name: str) -> StoredRelease | None:
    """Helm's Releases.Last: the highest revision of the release among its Secrets."""
    releases = [
        release_from_secret(s)
        for s in secrets
        if s.get("type") == RELEASE_SECRET_TYPE
        and ((s.get("metadata") or {}).get("labels") or {}).get("name") == name
    ]
    return max(releases, key=lambda r: r.version, default=None)


# --- Flux's Observation and its digest ------------------------------------------------------------


def _struct(fields: Iterable[tuple[str, Any, bool]]) -> GoStruct:
    """A Go struct: (json name, value, omitted when empty)."""
    return GoStruct((k, v) for k, v, omit in fields if not (omit and v in (None, "", 0, False, [], {})))


def _info(info: Mapping[str, Any]) -> GoStruct:
    # helm v4 release.Info: times are `omitzero` (Helm 3 wrote zero times as "").
    return _struct(
        [
            ("first_deployed", info.get("first_deployed"), True),
            ("last_deployed", info.get("last_deployed"), True),
            ("deleted", info.get("deleted"), True),
            ("description", info.get("description"), True),
            ("status", info.get("status"), True),
            ("rollback_revision", info.get("rollback_revision"), True),
            ("notes", info.get("notes"), True),
            ("resources", info.get("resources"), True),
        ]
    )


def _chart_metadata(md: Mapping[str, Any]) -> GoStruct:
    maintainers = [
        _struct([("name", m.get("name"), True), ("email", m.get("email"), True), ("url", m.get("url"), True)])
        for m in md.get("maintainers") or []
    ]
    dependencies = [
        _struct(
            [
                ("name", d.get("name", ""), False),
                ("version", d.get("version"), True),
                ("repository", d.get("repository", ""), False),
                ("condition", d.get("condition"), True),
                ("tags", d.get("tags"), True),
                ("enabled", d.get("enabled"), True),
                ("import-values", d.get("import-values"), True),
                ("alias", d.get("alias"), True),
            ]
        )
        for d in md.get("dependencies") or []
    ]
    return _struct(
        [
            ("name", md.get("name"), True),
            ("home", md.get("home"), True),
            ("sources", md.get("sources"), True),
            ("version", md.get("version"), True),
            ("description", md.get("description"), True),
            ("keywords", md.get("keywords"), True),
            ("maintainers", maintainers, True),
            ("icon", md.get("icon"), True),
            ("apiVersion", md.get("apiVersion"), True),
            ("condition", md.get("condition"), True),
            ("tags", md.get("tags"), True),
            ("appVersion", md.get("appVersion"), True),
            ("deprecated", md.get("deprecated"), True),
            ("annotations", dict(md.get("annotations") or {}), True),
            ("kubeVersion", md.get("kubeVersion"), True),
            ("dependencies", dependencies, True),
            ("type", md.get("type"), True),
        ]
    )


def _hook(hook: Mapping[str, Any]) -> GoStruct:
    run = hook.get("last_run") or {}
    return _struct(
        [
            ("name", hook.get("name"), True),
            ("kind", hook.get("kind"), True),
            ("path", hook.get("path"), True),
            ("manifest", hook.get("manifest"), True),
            ("events", hook.get("events"), True),
            (
                "last_run",
                _struct(
                    [
                        ("started_at", run.get("started_at"), True),
                        ("completed_at", run.get("completed_at"), True),
                        ("phase", run.get("phase", ""), False),
                    ]
                ),
                False,
            ),
            ("weight", hook.get("weight"), True),
            ("delete_policies", hook.get("delete_policies"), True),
            ("output_log_policies", hook.get("output_log_policies"), True),
        ]
    )


def _float64(value: Any) -> Any:
    """Helm's values after a JSON decode in Go: every number is a float64, maps are Go maps."""
    if isinstance(value, Mapping):
        return {k: _float64(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_float64(v) for v in value]
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def observation(release: StoredRelease, oci_digest: str | None = None) -> GoStruct:
    """helm-controller's Observation of a release: test hooks left out, so running tests keeps it."""
    hooks = [_hook(h) for h in release.hooks if "test" not in (h.get("events") or [])]
    config = release.config
    obs = GoStruct(
        name=release.name,
        version=release.version,
        info=_info(release.info),
        chartMetadata=_chart_metadata(release.chart_metadata),
        config=_float64(config) if config else None,
        manifest=release.manifest,
        hooks=hooks or None,
        namespace=release.namespace,
    )
    if oci_digest:
        obs["ociDigest"] = oci_digest
    return obs


def release_digest(release: StoredRelease, oci_digest: str | None = None) -> str:
    """Flux's snapshot digest: sha256 of json.Encoder's output (a trailing newline included)."""
    encoded = go_json(observation(release, oci_digest)) + "\n"
    return "sha256:" + hashlib.sha256(encoded.encode()).hexdigest()


_FRACTION = re.compile(r"\.\d+")


def _metav1_time(value: Any) -> str | None:
    """A Go time as metav1.Time writes it: RFC 3339 in UTC, whole seconds; zero times are absent."""
    if not value or not isinstance(value, str) or value.startswith("0001-01-01"):
        return None
    parsed = datetime.datetime.fromisoformat(_FRACTION.sub("", value, count=1).replace("Z", "+00:00"))
    return parsed.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def snapshot(
    release: StoredRelease,
    *,
    action: str | None = None,
    oci_digest: str | None = None,
    test_hooks: dict[str, TestHookStatus] | None = None,
) -> ReleaseSnapshot:
    """Flux's ObservedToSnapshot: the status.history entry of a release revision."""
    md = release.chart_metadata
    return ReleaseSnapshot(
        api_version=SNAPSHOT_API_VERSION,
        digest=release_digest(release, oci_digest),
        name=release.name,
        namespace=release.namespace,
        version=release.version,
        status=release.status,
        chart_name=release.chart_name,
        chart_version=release.chart_version,
        app_version=md.get("appVersion") or None,
        config_digest=config_digest(release.config),
        first_deployed=_metav1_time(release.info.get("first_deployed")) or "",
        last_deployed=_metav1_time(release.info.get("last_deployed")) or "",
        deleted=_metav1_time(release.info.get("deleted")),
        test_hooks=test_hooks,
        oci_digest=oci_digest or None,
        action=action,
    )


def digest_matches(snap: ReleaseSnapshot, release: StoredRelease) -> bool:
    """Flux's VerifyReleaseObject: legacy snapshots (no apiVersion v2) are not digest-checked."""
    if snap.api_version != SNAPSHOT_API_VERSION:
        return True
    return snap.digest == release_digest(release, snap.oci_digest)


# --- unlocking ------------------------------------------------------------------------------------


def secret_with_status(
    release: StoredRelease, status: str, description: str | None = None, now: float | None = None
) -> dict[str, Any]:
    """The release Secret with the release's status (and description) changed, as Helm's
    Releases.Update writes it; the description stays when None."""
    updated = GoStruct(release.release)
    info = GoStruct(updated.get("info") or {})
    info["status"] = status
    if description is not None:
        info["description"] = description
    updated["info"] = info
    secret: dict[str, Any] = json.loads(json.dumps(release.secret))
    meta = secret.setdefault("metadata", {})
    labels = meta.setdefault("labels", {})
    labels["status"] = status
    labels["modifiedAt"] = str(int(time.time() if now is None else now))
    encoded = encode_release(updated)
    secret["data"] = {**(secret.get("data") or {}), "release": base64.b64encode(encoded.encode()).decode()}
    return secret


def unlocked_secret(release: StoredRelease, now: float | None = None) -> dict[str, Any]:
    """The release Secret with the release marked failed, as Helm's Releases.Update writes it."""
    return secret_with_status(release, "failed", f"Release unlocked from stale '{release.status}' state", now)


class ReleaseStorage:
    """Helm's Secrets driver for one storage namespace, over Tide's async client."""

    def __init__(self, client: KubeClient, namespace: str) -> None:
        self.client = client
        self.namespace = namespace

    async def history(self, name: str) -> list[StoredRelease]:
        secrets = await self.client.list(
            "v1", "Secret", self.namespace, label_selector=release_selector(name)
        )
        releases = [release_from_secret(s) for s in secrets if s.get("type") == RELEASE_SECRET_TYPE]
        return sorted(releases, key=lambda r: r.version)

    async def latest(self, name: str) -> StoredRelease | None:
        releases = await self.history(name)
        return releases[-1] if releases else None

    async def get(self, name: str, version: int) -> StoredRelease | None:
        secret = await self.client.get(
            "v1", "Secret", f"sh.helm.release.v1.{name}.v{version}", self.namespace
        )
        return release_from_secret(secret) if secret and secret.get("type") == RELEASE_SECRET_TYPE else None

    async def unlock(self, release: StoredRelease) -> StoredRelease:
        """Mark a pending release failed; the Secret's resourceVersion guards against a live writer."""
        return await self._replace(release, unlocked_secret(release), "unlocking")

    async def set_status(
        self, release: StoredRelease, status: str, description: str | None = None
    ) -> StoredRelease:
        """Write the release's status as Helm does when an action's outcome changes it."""
        return await self._replace(release, secret_with_status(release, status, description), "recording it")

    async def _replace(self, release: StoredRelease, secret: dict[str, Any], doing: str) -> StoredRelease:
        try:
            written = await self.client.replace(secret)
        except KubeApiError as err:
            if err.conflict:
                raise ReleaseLockLost(f"release {release.full_name()} changed while {doing}") from err
            raise
        return release_from_secret(written)


class ReconcileStorage(ReleaseStorage):
    """Release storage as one reconcile reads it: `latest` answers from the last list until
    something writes storage (the controller here, Helm between `forget`s), and the release an
    action stored is read by name (`stored_after`). A reconcile lists storage once before a Helm
    action, not at each step of the loop, and not again after the action."""

    def __init__(self, client: KubeClient, namespace: str) -> None:
        super().__init__(client, namespace)
        self._listed: dict[str, StoredRelease | None] = {}

    async def history(self, name: str) -> list[StoredRelease]:
        releases = await super().history(name)
        self._listed[name] = releases[-1] if releases else None
        return releases

    async def latest(self, name: str) -> StoredRelease | None:
        if name in self._listed:
            return self._listed[name]
        return await super().latest(name)

    def forget(self) -> None:
        """Helm writes storage itself: what was listed before may be stale."""
        self._listed.clear()

    async def stored_after(self, name: str, before: int) -> StoredRelease | None:
        """The release a Helm action stored after revision `before`, if it stored one. Helm numbers
        a new release after the last one in storage, so it is read by name (one Secret, not every
        revision of the release); a list finds it when it is not there."""
        release = await self.get(name, before + 1)
        if release is None:
            self._listed.pop(name, None)
            latest = await self.latest(name)
            return latest if latest is not None and latest.version > before else None
        self._listed[name] = release
        return release

    async def _replace(self, release: StoredRelease, secret: dict[str, Any], doing: str) -> StoredRelease:
        self._listed.pop(release.name, None)
        return await super()._replace(release, secret, doing)
