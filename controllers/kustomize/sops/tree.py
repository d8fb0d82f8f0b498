"""The sops tree: ordered branches, decryption of every value and the MAC over them.

A branch is a ``Branch`` (a list of ``(key, value)`` pairs, so order and duplicate keys survive
as sops keeps them); a sequence is a list; leaves are str, int, float, bool or bytes; ``None``
is skipped. The MAC is SHA-512 over every leaf (or only the encrypted ones with
``mac_only_encrypted``) in walk order, upper-case hex, stored encrypted with the data key and
``lastmodified`` as additional data.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import re
from collections.abc import Callable, Mapping
from typing import Any

from .cipher import GoTime, PlainValue, decrypt_value, go_time_from_datetime, mac_bytes
from .errors import DecryptionError, MacMismatchError
from .metadata import Metadata

# sha256(b"sops"): written first when only encrypted values are covered, so the two MAC
# flavours never collide.
MAC_ONLY_ENCRYPTED_INIT = hashlib.sha256(b"sops").digest()


class Branch(list[tuple[str, Any]]):
    """An ordered mapping as sops sees it."""

    def get(self, key: str, default: Any = None) -> Any:
        for k, v in self:
            if k == key:
                return v
        return default

    def without(self, key: str) -> Branch:
        return Branch((k, v) for k, v in self if k != key)


def branch_from_mapping(value: Any) -> Any:
    if isinstance(value, Mapping):
        return Branch((k, branch_from_mapping(v)) for k, v in value.items())
    if isinstance(value, list):
        return [branch_from_mapping(v) for v in value]
    return value


def mapping_from_branch(value: Any) -> Any:
    if isinstance(value, Branch):
        return {k: mapping_from_branch(v) for k, v in value}
    if isinstance(value, list):
        return [mapping_from_branch(v) for v in value]
    if isinstance(value, GoTime):
        return str(value)  # plain str: YAML dumpers refuse str subclasses
    return value


Leaf = Callable[[Any, list[str]], Any]


def _walk(value: Any, path: list[str], on_leaf: Leaf) -> Any:
    if isinstance(value, Branch):
        out = Branch()
        for key, item in value:
            if not isinstance(key, str):
                raise DecryptionError(f"tree contains a non-string key at {_show(path)}")
            out.append((key, _walk(item, [*path, key], on_leaf)))
        return out
    if isinstance(value, list):
        return [_walk(item, path, on_leaf) for item in value]
    if value is None:
        return None
    if isinstance(value, (str, int, float, bool, bytes)):
        return on_leaf(value, path)
    if isinstance(value, datetime.date):  # a timestamp parsed by the caller's YAML loader
        return on_leaf(go_time_from_datetime(value), path)
    raise DecryptionError(f"cannot walk a value of type {type(value).__name__} at {_show(path)}")


def _show(path: list[str]) -> str:
    return "'" + ":".join(path) + "'" if path else "the document root"


def decrypt_branches(
    branches: list[Branch], meta: Metadata, data_key: bytes, *, name: str, mac_verified: bool = False
) -> list[Branch]:
    """Decrypt every branch and check the MAC; nothing is returned unless the MAC matches.

    ``mac_verified``: the MAC of this very document (same stored MAC) was already checked
    against its source file, and the tree given here is that file after kustomize's edits.
    Every encrypted value is still authenticated by AES-GCM with its path.
    """
    digest = hashlib.sha512()
    if meta.mac_only_encrypted:
        digest.update(MAC_ONLY_ENCRYPTED_INIT)

    def on_leaf(value: Any, path: list[str]) -> Any:
        encrypted = meta.should_encrypt(path)
        plain: PlainValue = value
        if encrypted:
            where = f"{name}: value {_show(path)}"
            if not isinstance(value, str):
                raise MacMismatchError(f"MAC mismatch: {where} should be encrypted but is a plain value")
            plain = decrypt_value(value, data_key, ":".join(path) + ":", where=where)
        if encrypted or not meta.mac_only_encrypted:
            digest.update(mac_bytes(plain))
        return plain

    result = [_walk(branch, [], on_leaf) for branch in branches]
    if mac_verified:
        return result
    verify_mac(digest.hexdigest().upper(), meta, data_key, name=name)
    return result


def computed_mac_matches(stored_mac: str, computed: str) -> bool:
    return hmac.compare_digest(stored_mac.encode(), computed.encode())


_RFC3339 = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)$")


def _go_rfc3339(timestamp: str) -> str:
    # sops re-formats the parsed time with time.RFC3339: no fractional seconds.
    match = _RFC3339.match(timestamp)
    if match is None:
        raise DecryptionError("sops metadata: lastmodified is not an RFC 3339 time")
    zone = match.group(3)
    return match.group(1) + ("Z" if zone in ("+00:00", "-00:00") else zone)


def verify_mac(computed: str, meta: Metadata, data_key: bytes, *, name: str) -> None:
    stored = decrypt_value(meta.mac, data_key, _go_rfc3339(meta.last_modified), where=f"{name}: the sops MAC")
    if not isinstance(stored, str) or not computed_mac_matches(stored, computed):
        raise MacMismatchError(
            f"MAC mismatch: {name} was modified after it was encrypted "
            "(the MAC computed over its values differs from the one sops stored)"
        )
