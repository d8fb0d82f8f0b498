"""Reading encrypted documents and writing the decrypted ones, per sops store.

YAML (multi-document, scalars typed as Go's yaml.v3 types them), JSON, dotenv, INI and binary
(a JSON envelope holding the file under ``data``). Comments are dropped: they never enter
the MAC and nothing downstream of the build reads them.
"""

from __future__ import annotations

import enum
import json
import re
from pathlib import PurePath
from typing import Any

import yaml

from tide.shared import boundedjson

from .cipher import GoTime, go_time
from .errors import DecryptionError, YAMLAliasRefused
from .metadata import Metadata, metadata_from_mapping, unflatten_metadata
from .tree import Branch, mapping_from_branch


class Format(enum.Enum):
    YAML = "YAML"
    JSON = "JSON"
    DOTENV = "dotenv"
    INI = "INI"
    BINARY = "binary"


# Flux's markers that say "this data is a sops encrypted document" (decryptor.go).
MARKERS: list[tuple[Format, bytes]] = [
    (Format.YAML, b"mac: ENC["),
    (Format.JSON, b'"mac": "ENC['),
    (Format.DOTENV, b"sops_mac=ENC["),
    (Format.INI, b"[sops]"),
]


def format_for_path(path: str) -> Format:
    suffix = PurePath(path).suffix.lower()
    return {
        ".yaml": Format.YAML,
        ".yml": Format.YAML,
        ".json": Format.JSON,
        ".env": Format.DOTENV,
        ".ini": Format.INI,
    }.get(suffix, Format.BINARY)


def marker_for(fmt: Format) -> bytes:
    if fmt is Format.BINARY:
        return b'"mac": "ENC['
    return dict(MARKERS)[fmt]


def detect_format(data: bytes) -> Format | None:
    for fmt, marker in MARKERS:
        if marker in data:
            return fmt
    return None


# --- YAML -----------------------------------------------------------------------------------

_BaseLoader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_BaseDumper: Any = getattr(yaml, "CSafeDumper", yaml.SafeDumper)

_YAML_FLOAT = re.compile(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$")
_YAML_SPECIAL: dict[str, Any] = {
    "": None, "~": None, "null": None, "Null": None, "NULL": None,
    "true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False,
    ".inf": float("inf"), ".Inf": float("inf"), ".INF": float("inf"),
    "+.inf": float("inf"), "+.Inf": float("inf"), "+.INF": float("inf"),
    "-.inf": float("-inf"), "-.Inf": float("-inf"), "-.INF": float("-inf"),
    ".nan": float("nan"), ".NaN": float("nan"), ".NAN": float("nan"),
}  # fmt: skip


def _go_int(text: str) -> int | None:
    """``strconv.ParseInt(s, 0, 64)`` (then ParseUint) as yaml.v3 resolves plain scalars."""
    sign = -1 if text.startswith("-") else 1
    body = text[1:] if text[:1] in "+-" else text
    base, digits = 10, body
    if body[:2] in ("0x", "0X"):
        base, digits = 16, body[2:]
    elif body[:2] in ("0o", "0O"):
        base, digits = 8, body[2:]
    elif body[:2] in ("0b", "0B"):
        base, digits = 2, body[2:]
    elif len(body) > 1 and body[0] == "0":
        base, digits = 8, body[1:]
    if not digits or not re.fullmatch(r"[0-9a-fA-F]+", digits):
        return None
    try:
        value = sign * int(digits, base)
    except ValueError:
        return None
    return value if -(2**63) <= value < 2**64 else None


def _resolve_plain(text: str) -> Any:
    if text in _YAML_SPECIAL:
        return _YAML_SPECIAL[text]
    if len(text) >= 8 and text[:4].isdigit() and text[4] == "-":
        timestamp = go_time(text)
        if timestamp is not None:
            return timestamp
    if text[:1] in "0123456789+-.":
        plain = text.replace("_", "")
        number = _go_int(plain)
        if number is not None:
            return number
        if _YAML_FLOAT.match(plain):
            return float(plain)
    return text


class _Loader(_BaseLoader):  # type: ignore[misc]
    """yaml.v3's view of scalars, mappings as ordered Branches, ``<<`` kept as a plain key."""


_Loader.yaml_implicit_resolvers = {}


def _construct_str(loader: Any, node: yaml.ScalarNode) -> Any:
    value = loader.construct_scalar(node)
    if not node.style:  # plain (None in pure-Python PyYAML, "" with libyaml)
        return _resolve_plain(value)
    return value


def _construct_mapping(loader: Any, node: yaml.MappingNode) -> Branch:
    branch = Branch()
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        branch.append((key, loader.construct_object(value_node, deep=True)))
    return branch


_Loader.add_constructor("tag:yaml.org,2002:str", _construct_str)
_Loader.add_constructor("tag:yaml.org,2002:map", _construct_mapping)
# sops writes merge keys as "!!merge <<": a plain "<<" key in its tree
_Loader.add_constructor("tag:yaml.org,2002:merge", lambda loader, node: "<<")


def _refuse_aliases(data: bytes) -> None:
    """A few KB of nested aliases name a tree of billions of nodes (each level multiplies the
    one below): every later walk (decrypt, MAC, emit) would expand it. SOPS documents have no
    use for them, so they are refused from the event stream, before anything is built."""
    for event in yaml.parse(data, Loader=_BaseLoader):
        if isinstance(event, yaml.AliasEvent):
            line = event.start_mark.line + 1 if event.start_mark is not None else 0
            raise YAMLAliasRefused(f"YAML aliases are not supported in SOPS documents (line {line})")


def _load_yaml(data: bytes) -> tuple[list[Branch], Any]:
    try:
        _refuse_aliases(data)
        documents = list(yaml.load_all(data, Loader=_Loader))
    except yaml.YAMLError as exc:
        raise DecryptionError(f"cannot parse YAML: {_yaml_problem(exc)}") from None
    branches: list[Branch] = []
    raw_meta = None
    for doc in documents:
        if doc is None:
            branches.append(Branch())
            continue
        if not isinstance(doc, Branch):
            raise DecryptionError("YAML documents that are not mappings are not supported")
        if raw_meta is None and not branches:
            raw_meta = mapping_from_branch(doc.get("sops"))
        branches.append(doc.without("sops"))
    return branches, raw_meta


def _yaml_problem(exc: yaml.YAMLError) -> str:
    # The problem and position only: a snippet of the document could be plaintext.
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or type(exc).__name__
    return f"{problem} at line {mark.line + 1}" if mark is not None else str(problem)


def _plain_python(value: Any) -> Any:
    if isinstance(value, Branch):
        return {k: _plain_python(v) for k, v in value}
    if isinstance(value, list):
        return [_plain_python(v) for v in value]
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, GoTime):
        return str(value)
    return value


def _emit_yaml(branches: list[Branch]) -> bytes:
    docs = [_plain_python(b) for b in branches]
    text = yaml.dump_all(
        docs, Dumper=_BaseDumper, sort_keys=False, default_flow_style=False, allow_unicode=True, width=1 << 30
    )
    return str(text).encode()


# --- JSON -----------------------------------------------------------------------------------


def _load_json(data: bytes) -> tuple[list[Branch], Any]:
    try:
        doc = boundedjson.loads(data, object_pairs_hook=Branch)
    except (ValueError, UnicodeDecodeError) as exc:
        where = f" at line {exc.lineno}" if isinstance(exc, json.JSONDecodeError) else ""
        raise DecryptionError(f"cannot parse JSON{where}") from None
    if not isinstance(doc, Branch):
        raise DecryptionError("sops only supports JSON documents with a top-level object")
    return [doc.without("sops")], mapping_from_branch(doc.get("sops"))


def _json_value(value: Any) -> Any:
    if isinstance(value, Branch):
        return {k: _json_value(v) for k, v in value}
    if isinstance(value, list):
        return [_json_value(v) for v in value]
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e21:
        return int(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, GoTime):
        return str(value)
    return value


def _emit_json(branches: list[Branch]) -> bytes:
    return (json.dumps(_json_value(branches[0]), indent="\t", ensure_ascii=False) + "\n").encode()


# --- dotenv ---------------------------------------------------------------------------------


def _load_dotenv(data: bytes) -> tuple[list[Branch], Any]:
    branch = Branch()
    flat: dict[str, str] = {}
    text = data.decode("utf-8", errors="surrogateescape")
    for number, line in enumerate(text.split("\n"), start=1):
        if not line or line.startswith("#"):
            continue
        pos = line.find("=")
        if pos == -1:
            raise DecryptionError(f"invalid dotenv line {number}: no '='")
        key, value = line[:pos], line[pos + 1 :].replace("\\n", "\n")
        if key.startswith("sops_"):
            flat[key[len("sops_") :]] = value
        else:
            branch.append((key, value))
    return [branch], unflatten_metadata(flat) if flat else None


def _text_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def _emit_dotenv(branches: list[Branch]) -> bytes:
    lines = []
    for key, value in branches[0]:
        if isinstance(value, (Branch, list)):
            raise DecryptionError(f"cannot use a complex value in a dotenv file (key {key!r})")
        lines.append(f"{key}={_text_value(value).replace(chr(10), chr(92) + 'n')}\n")
    return "".join(lines).encode("utf-8", errors="surrogateescape")


# --- INI ------------------------------------------------------------------------------------

_INI_SECTION = re.compile(r"^\[(.+)\]\s*$")


def _ini_value(raw: str) -> str:
    value = raw.strip()
    for quote in ('"""', '"', "'", "`"):
        if len(value) >= 2 * len(quote) and value.startswith(quote) and value.endswith(quote):
            return value[len(quote) : -len(quote)]
    cut = min((i for i in (value.find("#"), value.find(";")) if i >= 0), default=-1)
    return (value[:cut] if cut >= 0 else value).strip()


def _load_ini(data: bytes) -> tuple[list[Branch], Any]:
    sections: dict[str, Branch] = {"DEFAULT": Branch()}
    current = sections["DEFAULT"]
    text = data.decode("utf-8", errors="surrogateescape").lstrip("\ufeff")
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        match = _INI_SECTION.match(line)
        if match:
            current = sections.setdefault(match.group(1).strip(), Branch())
            continue
        positions = [i for i in (line.find("="), line.find(":")) if i >= 0]
        if not positions:
            raise DecryptionError(f"invalid INI line {number}: no key/value delimiter")
        pos = min(positions)
        current.append((line[:pos].strip(), _ini_value(line[pos + 1 :])))
    raw_meta = None
    if "sops" in sections:
        raw_meta = unflatten_metadata(dict(sections.pop("sops")))
    return [Branch(sections.items())], raw_meta


def _emit_ini(branches: list[Branch]) -> bytes:
    out: list[str] = []
    for name, section in branches[0]:
        if not isinstance(section, Branch):
            raise DecryptionError("INI sections must hold key/value pairs")
        if name != "DEFAULT":
            out.append(f"[{name}]\n")
        elif not section:
            continue
        for key, value in section:
            text = _text_value(value)
            if "\n" in text:
                text = f'"""{text}"""'
            elif text != text.strip() or "#" in text or ";" in text:
                text = f'"{text}"'
            out.append(f"{key} = {text}\n")
        out.append("\n")
    return "".join(out).encode("utf-8", errors="surrogateescape")


# --- binary ---------------------------------------------------------------------------------


def _emit_binary(branches: list[Branch]) -> bytes:
    value = branches[0].get("data") if branches else None
    if isinstance(value, bytes):
        return value
    if not isinstance(value, str):
        raise DecryptionError("binary document has no string 'data' value")
    return value.encode("utf-8", errors="surrogateescape")


_LOADERS = {
    Format.YAML: _load_yaml,
    Format.JSON: _load_json,
    Format.BINARY: _load_json,
    Format.DOTENV: _load_dotenv,
    Format.INI: _load_ini,
}

_EMITTERS = {
    Format.YAML: _emit_yaml,
    Format.JSON: _emit_json,
    Format.BINARY: _emit_binary,
    Format.DOTENV: _emit_dotenv,
    Format.INI: _emit_ini,
}


def load(data: bytes, fmt: Format) -> tuple[list[Branch], Metadata]:
    branches, raw_meta = _LOADERS[fmt](data)
    if raw_meta is None:
        raise DecryptionError("sops metadata not found")
    return branches, metadata_from_mapping(raw_meta)


def emit(branches: list[Branch], fmt: Format) -> bytes:
    if fmt in (Format.JSON, Format.BINARY, Format.DOTENV, Format.INI) and len(branches) != 1:
        raise DecryptionError(f"a {fmt.value} document holds exactly one tree")
    return _EMITTERS[fmt](branches)
