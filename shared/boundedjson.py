"""json.loads for untrusted bodies: nesting bounded.

Python's decoder recurses per level: 200,000 `[` raise RecursionError (a 500 where the caller
only expects ValueError), and a document just under the interpreter's limit still breaks the
first recursive walk over it (CEL conversion, tree walks). Every nesting deeper than
MAX_DEPTH is refused as JSONTooDeep, a ValueError like any other malformed body.
"""

from __future__ import annotations

import json
from typing import Any

MAX_DEPTH = 100


class JSONTooDeep(ValueError):
    """The document nests arrays and objects deeper than allowed."""


def loads(data: bytes | str, max_depth: int = MAX_DEPTH, **kwargs: Any) -> Any:
    try:
        value = json.loads(data, **kwargs)
    except RecursionError:
        raise JSONTooDeep(f"JSON nested deeper than {max_depth} levels") from None
    check_depth(value, max_depth)
    return value


def check_depth(value: Any, max_depth: int = MAX_DEPTH) -> None:
    """Raise JSONTooDeep when lists, tuples or dicts nest deeper than max_depth (no recursion)."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list | tuple):
            children = item
        else:
            continue
        if depth >= max_depth:
            raise JSONTooDeep(f"JSON nested deeper than {max_depth} levels")
        stack.extend((child, depth + 1) for child in children)
