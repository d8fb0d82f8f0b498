"""Go's encodings of JSON and of floats, byte for byte, for digests equal to Flux's.

Flux's release digest is sha256 of `encoding/json` output and its config digest sha256 of go-yaml
v2 output; Python's encoders differ in small ways (float forms, escapes, key order), and a digest
differs at the first byte that does.
"""

from __future__ import annotations

import decimal
import math
from collections.abc import Mapping
from typing import Any, Literal


def go_float(value: float, encoding: Literal["json", "yaml"]) -> str:
    """A float64 as encoding/json (`'f'`, or `'e'` outside [1e-6, 1e21)) or go-yaml v2 (`'g'`) writes it."""
    if math.isnan(value):
        return ".nan"
    if math.isinf(value):
        return ".inf" if value > 0 else "-.inf"
    sign, digit_tuple, exponent = decimal.Decimal(repr(value)).normalize().as_tuple()
    assert isinstance(exponent, int)
    digits = "".join(map(str, digit_tuple)).rstrip("0") or "0"
    point = len(digit_tuple) + exponent  # where the decimal point sits in `digits`
    exp = point - 1
    minus = "-" if sign else ""
    if value == 0:
        return minus + "0"
    if encoding == "json":
        scientific = abs(value) < 1e-6 or abs(value) >= 1e21
    else:
        scientific = exp < -4 or exp >= 6  # strconv 'g' with the shortest precision
    if scientific:
        mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        width = 1 if encoding == "json" and exp < 0 else 2  # json cleans e-09 up to e-9
        return f"{minus}{mantissa}e{'-' if exp < 0 else '+'}{abs(exp):0{width}d}"
    if point <= 0:
        return f"{minus}0.{'0' * -point}{digits}"
    if point >= len(digits):
        return f"{minus}{digits}{'0' * (point - len(digits))}"
    return f"{minus}{digits[:point]}.{digits[point:]}"


_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "<": "\\u003c",
    ">": "\\u003e",
    "&": "\\u0026",
    "\u2028": "\\u2028",
    "\u2029": "\\u2029",
}


def go_json_string(text: str) -> str:
    """A string as encoding/json writes it (HTML-safe escapes, UTF-8 kept)."""
    out = ['"']
    for char in text:
        escaped = _ESCAPES.get(char)
        if escaped is not None:
            out.append(escaped)
        elif char < " ":
            out.append(f"\\u{ord(char):04x}")
        elif "\ud800" <= char <= "\udfff":
            out.append("\ufffd")  # Go writes invalid UTF-8 as the replacement character
        else:
            out.append(char)
    out.append('"')
    return "".join(out)


class GoStruct(dict[str, Any]):
    """A JSON object whose keys keep their order, as a Go struct's fields (a plain dict is a Go map)."""


def go_json(value: Any) -> str:
    """encoding/json's Marshal: maps sorted by key, GoStruct fields in order, numbers as float64."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str):
        return go_json_string(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return go_float(value, "json")
    if isinstance(value, GoStruct):
        return "{" + ",".join(f"{go_json_string(k)}:{go_json(v)}" for k, v in value.items()) + "}"
    if isinstance(value, Mapping):
        items = sorted((str(k), v) for k, v in value.items())
        return "{" + ",".join(f"{go_json_string(k)}:{go_json(v)}" for k, v in items) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(go_json(v) for v in value) + "]"
    raise TypeError(f"no Go JSON encoding for {type(value).__name__}")
