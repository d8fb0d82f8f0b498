"""Managed fields (FieldsV1) and the equality rule that lets a no-op reconcile skip the API.

Rule (proved in tests/unit/test_apply_equality.py): server-side apply of a desired object D by manager M
on a live object L changes nothing when
  1. every field M owns in L is a field of D (nothing M owned would be removed), and
  2. every field of D has the same value in L (D is contained in L).
Applying sets exactly D's fields, which already hold D's values, and removes nothing: the result is L.
When the server normalises values (`1000m` becomes `1`), (2) fails and we fall back to a dry-run, as
Flux does every time. After an apply or dry-run we record a fingerprint: the digest of D and the
projection of the response onto M's fields; when D's digest is unchanged and L projected onto the same
fields still equals that snapshot (and M owns the same field set), applying D again is a no-op too,
since SSA is a function of (D, the values of the fields M owns).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

MISSING = object()
# List-map key fields the API server defaults (ports' protocol): a desired object may leave them out.
DEFAULTED_KEY_FIELDS = {"protocol"}


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def digest(value: Any) -> str:
    return hashlib.sha256(canonical(value).encode()).hexdigest()


def managed_fields(obj: Mapping[str, Any], manager: str, operation: str = "Apply") -> dict[str, Any] | None:
    """The FieldsV1 set the manager owns through apply (None when it owns nothing)."""
    for entry in (obj.get("metadata") or {}).get("managedFields") or []:
        if (
            entry.get("manager") == manager
            and entry.get("operation") == operation
            and not entry.get("subresource")
        ):
            fields = entry.get("fieldsV1")
            return fields if isinstance(fields, dict) else {}
    return None


def _lookup(value: Any, key: str) -> Any:
    if key.startswith("f:"):
        return value.get(key[2:], MISSING) if isinstance(value, Mapping) else MISSING
    if not isinstance(value, list):
        return MISSING
    if key.startswith("k:"):
        try:
            wanted = json.loads(key[2:])
        except ValueError:
            return MISSING
        for item in value:
            if isinstance(item, Mapping) and all(
                _loose_eq(item[k], v) if k in item else k in DEFAULTED_KEY_FIELDS for k, v in wanted.items()
            ):
                return item
        return MISSING
    if key.startswith("v:"):
        try:
            wanted = json.loads(key[2:])
        except ValueError:
            return MISSING
        return wanted if any(_loose_eq(item, wanted) for item in value) else MISSING
    if key.startswith("i:"):
        try:
            index = int(key[2:])
        except ValueError:
            return MISSING
        return value[index] if 0 <= index < len(value) else MISSING
    return MISSING


def _loose_eq(a: Any, b: Any) -> bool:
    # JSON decoding of FieldsV1 keys: 1 == 1.0 is fine, True == 1 is not.
    return (type(a) is bool) == (type(b) is bool) and bool(a == b)


def project(value: Any, fields: Mapping[str, Any]) -> Any:
    """The values of obj at the fields of a FieldsV1 set, in a comparable structure."""
    out: dict[str, Any] = {}
    for key, sub in fields.items():
        if key == ".":
            continue
        child = _lookup(value, key)
        if child is MISSING:
            out[key] = "\x00missing"
        elif not sub or set(sub) == {"."}:
            out[key] = child
        else:
            out[key] = project(child, sub)
    return out


def fields_present(value: Any, fields: Mapping[str, Any]) -> bool:
    """True when every field of the set exists in value (rule 1 against the desired object)."""
    for key, sub in fields.items():
        if key == ".":
            continue
        child = _lookup(value, key)
        if child is MISSING:
            return False
        if sub and set(sub) != {"."} and not fields_present(child, sub):
            return False
    return True


def contained_in(desired: Any, live: Any) -> bool:
    """Rule 2: every field of desired has the same value in live (maps may have more keys; lists are
    compared element by element and must have the same length)."""
    if isinstance(desired, Mapping):
        if not isinstance(live, Mapping):
            return False
        return all(k in live and contained_in(v, live[k]) for k, v in desired.items())
    if isinstance(desired, list):
        if not isinstance(live, list) or len(desired) != len(live):
            return False
        return all(contained_in(d, v) for d, v in zip(desired, live, strict=True))
    if isinstance(desired, bool) or isinstance(live, bool):
        return desired is live
    return bool(desired == live)


# Fields the server owns or that SSA never compares.
_SERVER_META = ("managedFields", "resourceVersion", "generation", "creationTimestamp", "uid", "selfLink")


def comparable(obj: Mapping[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in obj.items() if k != "status"}
    meta = {k: v for k, v in (obj.get("metadata") or {}).items() if k not in _SERVER_META}
    out["metadata"] = meta
    return out


@dataclass(frozen=True)
class Fingerprint:
    """What an apply (or a proving dry-run) of a desired object left in the cluster."""

    desired_digest: str
    fields: str  # canonical FieldsV1 of our manager
    snapshot: str  # canonical projection of the object onto those fields

    @classmethod
    def of(cls, desired_digest: str, result: Mapping[str, Any], manager: str) -> Fingerprint | None:
        fields = managed_fields(result, manager)
        if fields is None:
            return None
        return cls(desired_digest, canonical(fields), canonical(project(result, fields)))

    def matches(self, desired_digest: str, live: Mapping[str, Any], manager: str) -> bool:
        return desired_digest == self.desired_digest and self.holds(live, manager)

    def holds(self, live: Mapping[str, Any], manager: str) -> bool:
        """The live object still has what the apply left: the same fields ours, with the same values."""
        fields = managed_fields(live, manager)
        if fields is None or canonical(fields) != self.fields:
            return False
        return canonical(project(live, fields)) == self.snapshot


def provably_unchanged(desired: Mapping[str, Any], live: Mapping[str, Any], manager: str) -> bool:
    """Rules 1 and 2 without any record (e.g. after a restart, or objects Flux applied before)."""
    fields = managed_fields(live, manager)
    if fields is None:
        return False
    owned = {k: v for k, v in fields.items() if k != "f:status"}
    return fields_present(desired, owned) and contained_in(comparable(desired), live)
