"""Flux's ignore rules: JSON pointers (RFC 6901) removed from the objects a kustomize-style
selector picks. The kustomize controller uses them for `spec.ignore`-like stripping, the helm
controller for `spec.driftDetection.ignore`.

A selector's group, version, kind, name and namespace are anchored regular expressions; its
label and annotation selectors are Kubernetes label selectors (equality and set-based terms).
Selectors are tenant-written: the expressions run on RE2, as Go's regexp does (linear time, no
backreferences), never on a backtracking engine a crafted pattern could stall.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import Any

import re2

from tide.shared.inventory import split_api_version


class SelectorInvalid(ValueError):
    """A selector that does not parse (a bad regular expression or label selector)."""


_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False


@functools.lru_cache(maxsize=256)
def _compiled(pattern: str) -> Any:
    return re2.compile(pattern, options=_RE2_OPTIONS)


def full_match(pattern: str, value: str) -> bool:
    """Whether `value` matches all of the RE2 expression `pattern`."""
    try:
        return _compiled(pattern).fullmatch(value) is not None
    except re2.error as err:
        reason = err.args[0].decode() if err.args and isinstance(err.args[0], bytes) else str(err)
        raise SelectorInvalid(f"invalid regex '{pattern}': {reason}") from err


def selector_matches(target: Mapping[str, Any] | None, obj: Mapping[str, Any]) -> bool:
    """A Flux/kustomize Selector (group, version, kind, name, namespace: regexes; label/annotation
    selectors: label-selector terms) against an object. An empty selector matches everything."""
    if not target:
        return True
    group, version = split_api_version(obj.get("apiVersion", ""))
    meta = obj.get("metadata") or {}
    values = {
        "group": group,
        "version": version,
        "kind": obj.get("kind", ""),
        "name": meta.get("name", ""),
        "namespace": meta.get("namespace") or "",
    }
    for key, value in values.items():
        pattern = target.get(key)
        if pattern and not full_match(pattern, value):
            return False
    for key, source in (
        ("labelSelector", meta.get("labels") or {}),
        ("annotationSelector", meta.get("annotations") or {}),
    ):
        if target.get(key) and not label_selector_matches(target[key], source):
            return False
    return True


_SET_TERM = re.compile(r"^\s*(!?)\s*([^\s!=(),]+)\s*(?:(in|notin)\s*\(([^()]*)\))?\s*$")


def _terms(selector: str) -> list[str]:
    """Split on the commas outside parentheses."""
    terms: list[str] = []
    current: list[str] = []
    depth = 0
    for char in selector:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            terms.append("".join(current))
            current = []
        else:
            current.append(char)
    terms.append("".join(current))
    return [t.strip() for t in terms if t.strip()]


def label_selector_matches(selector: str, values: Mapping[str, str]) -> bool:
    """Kubernetes' label selector syntax: `k=v`, `k==v`, `k!=v`, `k`, `!k`, `k in (a,b)`,
    `k notin (a,b)`, comma-separated, all of which must hold."""
    for term in _terms(selector):
        if "!=" in term:
            k, v = (x.strip() for x in term.split("!=", 1))
            if values.get(k) == v:
                return False
            continue
        if "=" in term:
            k, v = (x.strip() for x in term.replace("==", "=").split("=", 1))
            if values.get(k) != v:
                return False
            continue
        match = _SET_TERM.match(term)
        if match is None:
            raise SelectorInvalid(f"invalid label selector term '{term}'")
        negated, key, operator, listed = match.groups()
        if operator:
            options = {o.strip() for o in listed.split(",") if o.strip()}
            inside = key in values and values[key] in options
            if inside != (operator == "in"):
                return False
        elif bool(negated) == (key in values):
            return False
    return True


def _unescape(token: str) -> str:
    return token.replace("~1", "/").replace("~0", "~")


def escape(token: str) -> str:
    """One JSON pointer reference token (RFC 6901)."""
    return token.replace("~", "~0").replace("/", "~1")


def remove_pointer(obj: dict[str, Any], pointer: str) -> None:
    """Delete the field at an RFC 6901 JSON pointer; absent paths are fine."""
    if not pointer.startswith("/"):
        return
    tokens = [_unescape(t) for t in pointer[1:].split("/")]
    current: Any = obj
    for token in tokens[:-1]:
        if isinstance(current, dict):
            current = current.get(token)
        elif isinstance(current, list) and token.isdigit() and int(token) < len(current):
            current = current[int(token)]
        else:
            return
    last = tokens[-1]
    if isinstance(current, dict):
        current.pop(last, None)
    elif isinstance(current, list) and last.isdigit() and int(last) < len(current):
        current.pop(int(last))
