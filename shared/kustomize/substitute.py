"""Post-build variable substitution with Flux's envsubst rules.

Flux substitutes on the YAML text of each object (so `replicas: ${count}` becomes an int), only the
`${...}` form (a bare `$var` stays as is), `$${var}` is the escape for a literal `${var}`, and in strict
mode (Flux's default since v1.9) a variable with neither a value nor a default fails the reconcile.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any

import yaml

from tide.shared.globmatch import compile_segments, reversed_segments, segments

VAR_NAME = re.compile(r"^[_a-zA-Z][_a-zA-Z0-9]*$")
SUBSTITUTE_KEY = "kustomize.toolkit.fluxcd.io/substitute"

# `$${` escape first, then `${` up to the matching `}` (nested braces are not part of Flux's syntax).
_TOKEN = re.compile(r"\$\$\{|\$\{([^{}]*)\}")
_EXPR = re.compile(
    r"^(?P<len>\#)?(?P<name>[_a-zA-Z][_a-zA-Z0-9]*)(?P<op>.*)$",
    re.DOTALL,
)


class SubstitutionError(ValueError):
    """A user error in postBuild substitution (undefined variable in strict mode, bad expression)."""


class PatternTooComplex(SubstitutionError):
    """A trim pattern and value whose matching would cost more than MAX_TRIM_WORK."""


def validate_names(variables: Mapping[str, str]) -> None:
    for name in variables:
        if not VAR_NAME.match(name):
            raise SubstitutionError(
                f"'{name}' is not a valid variable name: names must match {VAR_NAME.pattern}"
            )


def clean_value(value: str) -> str:
    """Flux strips newlines from values so a substitution cannot add lines to the YAML."""
    return value.replace("\r", "").replace("\n", "")


def _substring(value: str, args: str) -> str:
    parts = args.split(":", 1)
    try:
        pos = int(parts[0].strip() or "0")
        length = int(parts[1].strip()) if len(parts) > 1 else None
    except ValueError as exc:
        raise SubstitutionError(f"bad substring expression ':{args}'") from exc
    if pos < 0:
        pos = max(len(value) + pos, 0)
    if pos > len(value):
        return ""
    if length is None:
        return value[pos:]
    if length < 0:
        return value[pos : max(len(value) + length, pos)]
    return value[pos : pos + length]


def _evaluate(expr: str, variables: Mapping[str, str], strict: bool) -> str:
    match = _EXPR.match(expr)
    if not match:
        raise SubstitutionError(f"bad substitution '${{{expr}}}'")
    name, op = match.group("name"), match.group("op")
    defined = name in variables
    value = variables.get(name, "")

    if match.group("len"):
        if op:
            raise SubstitutionError(f"bad substitution '${{{expr}}}'")
        if strict and not defined:
            raise SubstitutionError(f'variable not set (strict mode): "{name}"')
        return str(len(value))

    # Defaults: `:=`/`:-` apply when unset or empty, `=`/`-` only when unset.
    for prefix, when_empty in ((":=", True), (":-", True), ("=", False), ("-", False)):
        if op.startswith(prefix):
            default = op[len(prefix) :]
            if not defined or (when_empty and value == ""):
                return default
            return value

    if strict and not defined:
        raise SubstitutionError(f'variable not set (strict mode): "{name}"')

    if op == "":
        return value
    if op.startswith("//"):
        old, _, new = op[2:].partition("/")
        return value.replace(old, new) if old else value
    if op.startswith("/"):
        old, _, new = op[1:].partition("/")
        return value.replace(old, new, 1) if old else value
    if op.startswith(":"):
        return _substring(value, op[1:])
    if op.startswith("##"):
        return _trim_prefix(value, op[2:], longest=True)
    if op.startswith("#"):
        return _trim_prefix(value, op[1:], longest=False)
    if op.startswith("%%"):
        return _trim_suffix(value, op[2:], longest=True)
    if op.startswith("%"):
        return _trim_suffix(value, op[1:], longest=False)
    if op == "^^":
        return value.upper()
    if op == ",,":
        return value.lower()
    if op == "^":
        return value[:1].upper() + value[1:]
    if op == ",":
        return value[:1].lower() + value[1:]
    raise SubstitutionError(f"bad substitution '${{{expr}}}'")


# Trimming tries the pattern along the value: bounded so one expression cannot hold a build
# for long even in linear time (Flux's values are short; a ConfigMap's are at most 1 MiB).
MAX_TRIM_WORK = 1 << 24


def _trim_regex(value: str, pattern: str, longest: bool, suffix: bool) -> re.Pattern[str]:
    if len(value) * (len(pattern) + 1) > MAX_TRIM_WORK:
        raise PatternTooComplex(
            f"pattern '{pattern[:40]}' on a value of {len(value)} characters is too much work to trim"
        )
    parts = segments(pattern, classes=False)
    return compile_segments(
        reversed_segments(parts) if suffix else parts, "longest" if longest else "shortest"
    )


def _trim_prefix(value: str, pattern: str, longest: bool) -> str:
    m = _trim_regex(value, pattern, longest, suffix=False).match(value)
    return value[m.end() :] if m else value


def _trim_suffix(value: str, pattern: str, longest: bool) -> str:
    # The pattern read backwards on the value read backwards: a prefix of that is a suffix here.
    m = _trim_regex(value, pattern, longest, suffix=True).match(value[::-1])
    return value[: len(value) - m.end()] if m else value


def substitute_text(text: str, variables: Mapping[str, str], strict: bool = True) -> str:
    """Replace `${...}` expressions in text; `$${` yields a literal `${`."""

    def replace(m: re.Match[str]) -> str:
        if m.group(0) == "$${":
            return "${"
        return _evaluate(m.group(1), variables, strict)

    return _TOKEN.sub(replace, text)


def substitution_disabled(obj: Mapping[str, Any]) -> bool:
    meta = obj.get("metadata") or {}
    for source in (meta.get("annotations") or {}, meta.get("labels") or {}):
        if str(source.get(SUBSTITUTE_KEY, "")).lower() == "disabled":
            return True
    return False


def substitute_object(
    obj: dict[str, Any], variables: Mapping[str, str], strict: bool = True, text: str | None = None
) -> dict[str, Any]:
    """Substitute one object through its YAML text (kustomize's output for it when given), as Flux
    does: `replicas: ${n}` becomes a number, and so would a string field whose whole value is `${n}`."""
    if text is None:
        text = yaml.dump(obj, Dumper=_Dumper, default_flow_style=False, sort_keys=False, width=1 << 30)
    if "${" not in text:
        return obj
    out = substitute_text(text, variables, strict)
    if out == text:
        return obj
    where = f"{obj.get('kind', '?')}/{(obj.get('metadata') or {}).get('name', '?')}"
    try:
        result = yaml.load(out, Loader=_Loader)
    except yaml.YAMLError as exc:
        raise SubstitutionError(
            f"{where}: the substituted values make invalid YAML (quote the ${{...}} in Git): {exc}"
        ) from exc
    if not isinstance(result, dict):
        raise SubstitutionError(f"{where}: substitution did not produce a Kubernetes object")
    return result


def substitute_objects(
    objects: list[dict[str, Any]],
    variables: Mapping[str, str],
    strict: bool = True,
    texts: list[str | None] | None = None,
) -> list[dict[str, Any]]:
    validate_names(variables)
    cleaned = {k: clean_value(v) for k, v in variables.items()}
    texts = texts if texts is not None else [None] * len(objects)
    return [
        obj if substitution_disabled(obj) else substitute_object(obj, cleaned, strict, text)
        for obj, text in zip(objects, texts, strict=True)
    ]


def variables_digest(variables: Mapping[str, str]) -> str:
    return hashlib.sha256(json.dumps(dict(variables), sort_keys=True).encode()).hexdigest()


try:  # the C implementations are several times faster on large builds
    _Loader: Any = yaml.CSafeLoader
    _Dumper: Any = yaml.CSafeDumper
except AttributeError:  # pragma: no cover
    _Loader = yaml.SafeLoader
    _Dumper = yaml.SafeDumper
