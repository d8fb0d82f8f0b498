"""A HelmRelease's values: valuesFrom merged in order, then values; and Flux's config digest.

Pure: the ConfigMap and Secret data arrive already read (the reconciler reads them at the edge),
so the merge rules are table-tested without a cluster. The rules are Flux's (fluxcd/pkg chartutil):

- each valuesFrom entry is read from `valuesKey` (default `values.yaml`); a missing object or key is
  skipped when `optional`, an error otherwise;
- without `targetPath`, the data is a YAML document merged over what came before (maps merge
  deeply, everything else replaces);
- with `targetPath`, the inline values are merged first, then the data is set at that path with
  Helm's `--set` syntax (`literal`: the data is one string, whatever it holds; quoted data: a string;
  otherwise typed as `--set` types it) over everything before it;
- the inline `values` are merged last, so they win over valuesFrom, targetPath included.

The config digest is `sha256:` of the merged values as key-sorted YAML, byte for byte what Flux's
`chartutil.DigestValues` writes (go-yaml v2 over `JSONObjectToYAMLObject`), so a release Flux
managed is not upgraded for nothing when Tide takes it over.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import yaml

from tide.controllers.helm.go_encoding import go_float
from tide.controllers.helm.sdk import helm_sdk
from tide.shared.api.helm import ValuesReference
from tide.shared.mapmerge import merge_maps

Values = dict[str, Any]
ReferenceData = Callable[[str, str], Mapping[str, str] | None]
"""(kind, name) -> the object's data (Secret data decoded), or None when it does not exist."""


class ValuesError(Exception):
    """A valuesFrom entry cannot be used; the message names the reference and what to fix."""

    def __init__(self, ref: ValuesReference, namespace: str, what: str) -> None:
        self.ref = ref
        super().__init__(
            f"could not resolve {ref.kind} chart values reference '{namespace}/{ref.name}' "
            f"with key '{ref.key()}': {what}"
        )


class ValuesReferenceNotFound(ValuesError):
    """The ConfigMap or Secret, or its key, does not exist (and the reference is not optional)."""


class ValuesDataInvalid(ValuesError):
    """The referenced data is not a YAML map, or its targetPath expression does not parse."""


def compose_values(
    refs: Sequence[ValuesReference], namespace: str, data_of: ReferenceData, inline: Mapping[str, Any] | None
) -> Values:
    """The values a release is installed with: valuesFrom in order, then the inline values."""
    inline = dict(inline or {})
    result: Values = {}
    for ref in refs:
        data = data_of(ref.kind, ref.name)
        if data is None:
            if ref.optional:
                continue
            raise ValuesReferenceNotFound(ref, namespace, "not found")
        if ref.key() not in data:
            if ref.optional:
                continue
            raise ValuesReferenceNotFound(ref, namespace, "key not found")
        text = data[ref.key()]
        if ref.target_path:
            result = merge_maps(result, inline)
            result = merge_maps(result, _set_at_path(ref, namespace, ref.target_path, text))
            continue
        result = merge_maps(result, _read_values(ref, namespace, text))
    return merge_maps(result, inline)


def _read_values(ref: ValuesReference, namespace: str, text: str) -> Values:
    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ValuesDataInvalid(ref, namespace, f"failed to read values: {err}") from err
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ValuesDataInvalid(ref, namespace, "failed to read values: not a YAML map")
    return loaded


_QUOTES = "'\""
_LITERAL_ESCAPES = str.maketrans({"\\": "\\\\", ",": "\\,", "[": "\\[", "]": "\\]", "{": "\\{", "}": "\\}"})


def _set_at_path(ref: ValuesReference, namespace: str, path: str, value: str) -> Values:
    """Helm's `--set` (strvals) parser, the real one, as Flux's ReplacePath(Literal)Value calls it.

    strvals writes into the values in place; here it parses into a fresh map that is then merged,
    which differs only for a list index into an existing list (the list is replaced).
    """
    helm_python = helm_sdk()  # the Helm SDK library is large: loaded when a targetPath needs it

    try:
        parsed: dict[str, Any]
        if ref.literal:
            parsed = helm_python.parse_set_string_values(f"{path}={value.translate(_LITERAL_ESCAPES)}")
            return parsed
        for quote in ("'", '"'):
            if value.startswith(quote) and value.endswith(quote):
                parsed = helm_python.parse_set_string_values(f"{path}={value.strip(_QUOTES)}")
                return parsed
        parsed = helm_python.parse_set_string(f"{path}={value}")
        return parsed
    except helm_python.HelmError as err:
        raise ValuesDataInvalid(ref, namespace, f"failed to set values at path '{path}': {err}") from err


# --- the config digest --------------------------------------------------------------------------


def config_digest(values: Mapping[str, Any] | None) -> str:
    """Flux's configDigest: sha256 of the values as key-sorted YAML; empty values hash nothing."""
    if not values:
        return "sha256:" + hashlib.sha256(b"").hexdigest()
    return "sha256:" + hashlib.sha256(values_yaml(values).encode()).hexdigest()


def values_yaml(values: Mapping[str, Any]) -> str:
    """The values as go-yaml v2 writes them for Flux's digest."""
    text: str = yaml.dump(
        _json_shaped(values),
        Dumper=_GoYAMLDumper,
        sort_keys=True,
        default_flow_style=False,
        allow_unicode=True,
        width=80,
    )
    return text


def _json_shaped(value: Any) -> Any:
    """What Helm's values are after a JSON round trip and JSONObjectToYAMLObject: whole floats are ints."""
    if isinstance(value, Mapping):
        return {str(k): _json_shaped(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_shaped(v) for v in value]
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**63:
        return int(value)
    if isinstance(value, bool | int | float | str) or value is None:
        return value
    return json.loads(json.dumps(value, default=str))


class _GoYAMLDumper(yaml.SafeDumper):  # type: ignore[misc]
    """PyYAML's emitter (a libyaml port, as go-yaml's) with go-yaml v2's scalar choices."""


_GO_BOOLS = {"y", "Y", "n", "N"}  # YAML 1.1 booleans go-yaml resolves and PyYAML does not


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    # go-yaml v2: a string that would read back as another type is double-quoted, a multi-line
    # one is a literal block, anything else plain (the emitter quotes what plain cannot carry).
    if "\n" in value:
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|")
    implicit = dumper.resolve(yaml.ScalarNode, value, (True, False))
    if implicit != "tag:yaml.org,2002:str" or value in _GO_BOOLS or _is_go_number(value):
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style='"')
    return dumper.represent_scalar("tag:yaml.org,2002:str", value)


def _is_go_number(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return value.strip() == value and value.lower() not in {"inf", "+inf", "-inf", "nan", "infinity"}


def _represent_float(dumper: yaml.SafeDumper, value: float) -> yaml.ScalarNode:
    text = go_float(value, "yaml")
    tag = dumper.resolve(yaml.ScalarNode, text, (True, False))
    return dumper.represent_scalar(tag if tag == "tag:yaml.org,2002:float" else "tag:yaml.org,2002:str", text)


_GoYAMLDumper.add_representer(str, _represent_str)
_GoYAMLDumper.add_representer(float, _represent_float)
