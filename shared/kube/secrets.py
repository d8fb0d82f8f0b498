"""Secrets as controllers read them."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any


def secret_data(secret: Mapping[str, Any] | None) -> dict[str, bytes]:
    """A Secret's data decoded; stringData honoured for objects that were never stored."""
    if not secret:
        return {}
    out = {k: base64.b64decode(v) for k, v in (secret.get("data") or {}).items() if v is not None}
    out.update({k: str(v).encode() for k, v in (secret.get("stringData") or {}).items()})
    return out
