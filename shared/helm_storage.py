"""Helm's release records as stored in Secrets `sh.helm.release.v1.<name>.v<version>`: read by the helm
controller and by `tide tree`."""

from __future__ import annotations

import base64
import gzip
import json
from collections.abc import Callable
from typing import Any

GZIP_MAGIC = b"\x1f\x8b\x08"


def release_secret_name(name: str, version: int) -> str:
    return f"sh.helm.release.v1.{name}.v{version}"


def decode_release_json(
    encoded: str | bytes, object_pairs_hook: Callable[[list[tuple[str, Any]]], Any] | None = None
) -> Any:
    """Helm's decodeRelease: base64, gzip when it starts with gzip's magic, then JSON.
    Raises binascii.Error, OSError, EOFError or ValueError on data Helm could not have written."""
    data = base64.b64decode(encoded, validate=False)
    if data.startswith(GZIP_MAGIC):
        data = gzip.decompress(data)
    return json.loads(data, object_pairs_hook=object_pairs_hook)
