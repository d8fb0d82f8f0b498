"""Flux's MergeMaps, the merge of Helm values: maps merge key by key, anything else (lists too)
in the overlay replaces what was there."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def merge_maps(base: Mapping[str, Any], overlay: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in overlay.items():
        current = out.get(key)
        if isinstance(value, Mapping) and isinstance(current, Mapping):
            out[key] = merge_maps(current, value)
        else:
            out[key] = value
    return out
