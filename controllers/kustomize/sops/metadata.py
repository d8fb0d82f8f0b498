"""The ``sops`` metadata block: key groups, Shamir threshold, MAC and the encryption rules."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import DecryptionError

DEFAULT_UNENCRYPTED_SUFFIX = "_unencrypted"

# sops' decryption order: age first, then PGP, then everything else as written.
KEY_ORDER = {"age": 0, "pgp": 1}

_KEY_FIELDS: dict[str, tuple[str, ...]] = {
    "age": ("recipient",),
    "pgp": ("fp",),
    "kms": ("arn",),
    "gcp_kms": ("resource_id",),
    "azure_kv": ("vault_url", "name", "version"),
    "hc_vault": ("vault_address", "engine_path", "key_name"),
}

KIND_NAMES = {
    "age": "age recipient",
    "pgp": "PGP key",
    "kms": "AWS KMS key",
    "gcp_kms": "GCP KMS key",
    "azure_kv": "Azure Key Vault key",
    "hc_vault": "Vault transit key",
}


@dataclass(frozen=True)
class MasterKey:
    kind: str  # one of _KEY_FIELDS
    key_id: str  # fingerprint, recipient, ARN, resource id, URL…; public information
    enc: str  # the data key (or its Shamir part) encrypted to this key
    vault_address: str = ""

    def describe(self) -> str:
        return f"{KIND_NAMES[self.kind]} {self.key_id}"


@dataclass
class Metadata:
    key_groups: list[list[MasterKey]]
    shamir_threshold: int
    last_modified: str
    mac: str
    version: str = ""
    unencrypted_suffix: str = ""
    encrypted_suffix: str = ""
    unencrypted_regex: str = ""
    encrypted_regex: str = ""
    mac_only_encrypted: bool = False
    _patterns: dict[str, re.Pattern[str]] = field(default_factory=dict, repr=False)

    def should_encrypt(self, path: list[str]) -> bool:
        """sops' rule for whether the value at ``path`` is (to be) encrypted."""
        encrypted = True
        if self.unencrypted_suffix and any(p.endswith(self.unencrypted_suffix) for p in path):
            encrypted = False
        if self.encrypted_suffix:
            encrypted = any(p.endswith(self.encrypted_suffix) for p in path)
        if self.unencrypted_regex and any(self._regex("u").search(p) for p in path):
            encrypted = False
        if self.encrypted_regex:
            encrypted = any(self._regex("e").search(p) for p in path)
        return encrypted

    def _regex(self, which: str) -> re.Pattern[str]:
        pattern = self._patterns.get(which)
        if pattern is None:
            source = self.encrypted_regex if which == "e" else self.unencrypted_regex
            try:
                pattern = re.compile(source)
            except re.error as exc:
                raise DecryptionError(f"invalid regular expression in sops metadata: {exc}") from None
            self._patterns[which] = pattern
        return pattern

    def key_ids(self) -> list[str]:
        return [k.describe() for group in self.key_groups for k in group]


def _master_keys(entries: Any, kind: str) -> list[MasterKey]:
    if not entries:
        return []
    if not isinstance(entries, list):
        raise DecryptionError(f"sops metadata: '{kind}' is not a list")
    keys = []
    for entry in entries:
        if not isinstance(entry, Mapping):
            raise DecryptionError(f"sops metadata: '{kind}' entry is not a mapping")
        key_id = "/".join(str(entry.get(f) or "") for f in _KEY_FIELDS[kind]).strip("/")
        keys.append(
            MasterKey(
                kind=kind,
                key_id=key_id,
                enc=str(entry.get("enc") or ""),
                vault_address=str(entry.get("vault_address") or ""),
            )
        )
    return keys


def _group(mapping: Mapping[str, Any]) -> list[MasterKey]:
    # sops' internal group order: kms, gcp_kms, azure_kv, hc_vault, pgp, age
    group: list[MasterKey] = []
    for kind in ("kms", "gcp_kms", "azure_kv", "hc_vault", "pgp", "age"):
        group.extend(_master_keys(mapping.get(kind), kind))
    return group


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def metadata_from_mapping(raw: Any) -> Metadata:
    """Build Metadata from the parsed ``sops`` mapping (YAML/JSON, or unflattened dotenv/INI)."""
    if not isinstance(raw, Mapping):
        raise DecryptionError("sops metadata not found")
    top = _group(raw)
    if top:
        groups = [top]
    elif raw.get("key_groups"):
        if not isinstance(raw["key_groups"], list):
            raise DecryptionError("sops metadata: 'key_groups' is not a list")
        groups = [_group(g) for g in raw["key_groups"] if isinstance(g, Mapping)]
    else:
        raise DecryptionError("sops metadata: no keys found in file")
    try:
        # sops writes "2.000000" into INI files (and cannot read it back): accept whole floats
        number = float(raw.get("shamir_threshold") or 0)
    except (TypeError, ValueError):
        number = 0.5
    if not number.is_integer():
        raise DecryptionError("sops metadata: shamir_threshold is not an integer")
    threshold = int(number)
    mac_only = raw.get("mac_only_encrypted")
    meta = Metadata(
        key_groups=groups,
        shamir_threshold=threshold or len(groups),
        last_modified=_text(raw.get("lastmodified")),
        mac=_text(raw.get("mac")),
        version=_text(raw.get("version")),
        unencrypted_suffix=_text(raw.get("unencrypted_suffix")),
        encrypted_suffix=_text(raw.get("encrypted_suffix")),
        unencrypted_regex=_text(raw.get("unencrypted_regex")),
        encrypted_regex=_text(raw.get("encrypted_regex")),
        mac_only_encrypted=mac_only is True or mac_only == "true",
    )
    rules = [meta.unencrypted_suffix, meta.encrypted_suffix, meta.unencrypted_regex, meta.encrypted_regex]
    if sum(1 for r in rules if r) > 1:
        raise DecryptionError(
            "sops metadata: more than one of encrypted_suffix, unencrypted_suffix, "
            "encrypted_regex, unencrypted_regex is set"
        )
    if not any(rules):
        meta.unencrypted_suffix = DEFAULT_UNENCRYPTED_SUFFIX
    for option in ("unencrypted_comment_regex", "encrypted_comment_regex"):
        if raw.get(option):
            raise DecryptionError(f"sops metadata: {option} is not supported by Tide")
    if not meta.mac:
        raise DecryptionError("sops metadata: the document has no MAC")
    return meta


_MAP = "__map_"
_LIST = "__list_"


def _tokens(path: str) -> list[str | int]:
    tokens: list[str | int] = []
    parts = re.split(r"(__map_|__list_)", path)
    tokens.append(parts[0])
    for sep, text in zip(parts[1::2], parts[2::2], strict=True):
        tokens.append(text if sep == _MAP else int(text or 0))
    return tokens


def unflatten_metadata(flat: Mapping[str, str]) -> dict[str, Any]:
    """Rebuild the metadata mapping dotenv and INI store flattened (``age__list_0__map_enc``)."""
    root: dict[str, Any] = {}
    for flat_key, raw_value in flat.items():
        value: Any = raw_value.replace("\\n", "\n") if isinstance(raw_value, str) else raw_value
        try:
            tokens = _tokens(flat_key)
        except ValueError:
            raise DecryptionError(f"sops metadata: malformed key {flat_key!r}") from None
        node: Any = root
        for current, nxt in zip(tokens, [*tokens[1:], None], strict=True):
            if nxt is None:
                _assign(node, current, value)
                break
            child = _child(node, current)
            if child is None:
                child = {} if isinstance(nxt, str) else []
                _assign(node, current, child)
            node = child
    return root


def _child(node: Any, token: str | int) -> Any:
    if isinstance(node, dict) and isinstance(token, str):
        return node.get(token)
    if isinstance(node, list) and isinstance(token, int):
        return node[token] if token < len(node) else None
    raise DecryptionError("sops metadata: inconsistent flattened keys")


def _assign(node: Any, token: str | int, value: Any) -> None:
    if isinstance(node, dict) and isinstance(token, str):
        node[token] = value
    elif isinstance(node, list) and isinstance(token, int):
        while len(node) <= token:
            node.append(None)
        node[token] = value
    else:
        raise DecryptionError("sops metadata: inconsistent flattened keys")
