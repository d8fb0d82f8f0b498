"""Drift corrected in real time: which changes to applied objects call for a reconcile now.

The watch caches the applier already holds (one per kind, selected by the owner label) see every
change to the objects a Kustomization applied. A change is drift when the object no longer holds what
our last apply left in the fields our field manager owns (the apply's fingerprint), or when the object
is deleted. Fields we do not own (spec.ignore paths, fields another manager such as an HPA owns) are
outside the fingerprint, so writes there are not drift; objects marked `ssa: Ignore | IfNotPresent`
are never corrected. Our own applies do not loop: they leave the fingerprint they are compared with,
and an event where only our entry in managedFields changed is ours.

When another writer keeps changing a field we own, the corrections back off exponentially per object
and the Kustomization gets one Warning event naming that writer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tide.controllers.kustomize.apply import ssa_policy
from tide.controllers.kustomize.fields import Fingerprint, canonical, managed_fields, project
from tide.shared.kustomize.owner import NAME_LABEL, NAMESPACE_LABEL

DRIFT_ANNOTATION = "kustomize.toolkit.fluxcd.io/drift-correction"
DRIFT_BACKOFF_REASON = "DriftCorrectionBackoff"
DELETION = "(deletion)"

Key = tuple[str, str]


def correction_disabled(kustomization: Mapping[str, Any]) -> bool:
    """`kustomize.toolkit.fluxcd.io/drift-correction: disabled`: drift waits for the interval (Flux)."""
    annotations = (kustomization.get("metadata") or {}).get("annotations") or {}
    return str(annotations.get(DRIFT_ANNOTATION, "")).lower() == "disabled"


def owner_of(obj: Mapping[str, Any]) -> Key | None:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    name, namespace = labels.get(NAME_LABEL), labels.get(NAMESPACE_LABEL)
    if not name or not namespace:
        return None
    return str(namespace), str(name)


def _entries(obj: Mapping[str, Any] | None) -> dict[tuple[str, str, str], Any]:
    out: dict[tuple[str, str, str], Any] = {}
    for entry in ((obj or {}).get("metadata") or {}).get("managedFields") or []:
        identity = (
            str(entry.get("manager", "")),
            str(entry.get("operation", "")),
            str(entry.get("subresource", "")),
        )
        out[identity] = (entry.get("time"), entry.get("fieldsV1"))
    return out


def writers(obj: Mapping[str, Any], old: Mapping[str, Any] | None) -> list[tuple[str, str, str]]:
    """The managedFields entries (manager, operation, subresource) this change touched."""
    before, after = _entries(old), _entries(obj)
    return [identity for identity, value in after.items() if before.get(identity) != value]


def other_writer(obj: Mapping[str, Any], old: Mapping[str, Any] | None, manager: str) -> str:
    """The field manager behind a change that is not our apply ("" when it cannot be told)."""
    others = [m for m, op, _ in writers(obj, old) if (m, op) != (manager, "Apply")]
    return others[0] if others else ""


def _ours(obj: Mapping[str, Any], manager: str) -> tuple[str, str]:
    fields = managed_fields(obj, manager) or {}
    return canonical(fields), canonical(project(obj, fields))


def is_drift(
    event_type: str,
    obj: Mapping[str, Any],
    old: Mapping[str, Any] | None,
    fingerprint: Fingerprint | None,
    manager: str,
) -> bool:
    """A change that a reconcile would undo. Without a fingerprint this process has not applied the
    object (or skipped it by its ssa policy): the interval handles it, as in Flux."""
    if fingerprint is None or ssa_policy(obj) in ("Ignore", "IfNotPresent"):
        return False
    if event_type == "DELETED":
        return True
    if event_type != "MODIFIED" or fingerprint.holds(obj, manager):
        return False
    if old is not None and _ours(old, manager) == _ours(obj, manager):
        return False  # drifted before, already seen: this change (a status update) is not ours to judge
    touched = writers(obj, old)
    # Our own apply, seen before its fingerprint was recorded: not drift.
    return not (old is not None and touched and all((m, op) == (manager, "Apply") for m, op, _ in touched))


@dataclass(frozen=True)
class Verdict:
    delay: float  # seconds before the correcting reconcile (0: now)
    warn: bool  # emit the one Warning event of this fight


@dataclass
class _Fight:
    count: int = 0
    last: float = 0.0
    delay: float = 0.0
    warned: bool = False


@dataclass
class FightDetector:
    """Per object: drift that comes back within `quiet` seconds of the last correction (plus its
    backoff) is a fight; after `threshold` corrections each further one waits twice as long, up to
    `cap`, and the first backed-off correction asks for the Warning event."""

    threshold: int = 3
    base: float = 1.0
    cap: float = 300.0
    quiet: float = 60.0
    limit: int = 10_000
    _fights: dict[str, _Fight] = field(default_factory=dict)

    def observe(self, key: str, now: float) -> Verdict:
        fight = self._fights.get(key)
        if fight is None or now - fight.last > self.quiet + fight.delay:
            fight = self._fights[key] = _Fight()
            self._trim(now)
        fight.count += 1
        fight.last = now
        if fight.count <= self.threshold:
            fight.delay = 0.0
            return Verdict(0.0, False)
        fight.delay = min(self.cap, self.base * 2 ** (fight.count - self.threshold - 1))
        warn, fight.warned = not fight.warned, True
        return Verdict(fight.delay, warn)

    def _trim(self, now: float) -> None:
        if len(self._fights) <= self.limit:
            return
        for key, fight in list(self._fights.items()):
            if now - fight.last > self.quiet + fight.delay:
                del self._fights[key]


def backoff_message(display: str, writer: str, delay: float) -> str:
    if writer == DELETION:
        who = "keeps being deleted"
    else:
        who = f"keeps being changed by field manager '{writer or 'unknown'}'"
    return (
        f"{display} {who} in fields this Kustomization applies; correcting it with exponential "
        f"backoff (next in {delay:g}s). Remove those fields from the source, or annotate the object "
        "with kustomize.toolkit.fluxcd.io/ssa: Ignore or IfNotPresent, to hand them over"
    )
