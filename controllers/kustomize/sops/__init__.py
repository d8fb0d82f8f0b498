"""Native SOPS decryption: the sops file format read in Python, no sops binary.

Data key from age (pyrage) or PGP (GnuPG in a throw-away home) master keys, across key groups
with a Shamir threshold; AES-256-GCM values authenticated with their path; the MAC over the
document verified before any decrypted value is returned.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .errors import DecryptionError, MacMismatchError
from .formats import Format, detect_format, emit, format_for_path, load, marker_for
from .keys import Keyring
from .metadata import Metadata, metadata_from_mapping
from .tree import Branch, branch_from_mapping, decrypt_branches, mapping_from_branch

__all__ = [
    "DecryptionError",
    "Format",
    "Keyring",
    "MacMismatchError",
    "Metadata",
    "decrypt_bytes",
    "decrypt_document",
    "decrypt_mapping",
    "detect_format",
    "format_for_path",
    "is_encrypted",
    "marker_for",
]


def is_encrypted(data: bytes, fmt: Format) -> bool:
    return marker_for(fmt) in data


def decrypt_document(
    data: bytes, fmt: Format, keyring: Keyring, *, name: str
) -> tuple[list[Branch], Metadata]:
    """Load, recover the data key, decrypt and verify the MAC of a whole document."""
    branches, meta = load(data, fmt)
    key = keyring.data_key(meta, name=name)
    return decrypt_branches(branches, meta, key, name=name), meta


def decrypt_bytes(
    data: bytes, fmt: Format, keyring: Keyring, *, name: str, output: Format | None = None
) -> bytes:
    """The decrypted document, written in ``output`` (default: its own format)."""
    branches, _ = decrypt_document(data, fmt, keyring, name=name)
    return emit(branches, output or fmt)


def decrypt_mapping(
    document: Mapping[str, Any], keyring: Keyring, *, name: str, mac_verified: bool = False
) -> dict[str, Any]:
    """Decrypt a parsed document holding its ``sops`` block (e.g. a built Secret manifest)."""
    meta = metadata_from_mapping(document.get("sops"))
    branch = branch_from_mapping({k: v for k, v in document.items() if k != "sops"})
    key = keyring.data_key(meta, name=name)
    [plain] = decrypt_branches([branch], meta, key, name=name, mac_verified=mac_verified)
    result: dict[str, Any] = mapping_from_branch(plain)
    return result
