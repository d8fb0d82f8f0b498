"""CEL's optional types (cel-go's `cel.OptionalTypes()`, which Flux enables) on top of cel-python.

cel-python parses neither `a.?b` nor `a[?k]`, and has no `optional` functions, so the source is
rewritten into calls it does parse, evaluated by the functions in FUNCTIONS:

    a.?b                 -> a._opt_sel("b")
    a[?k]                -> a._opt_idx(k)
    a.?b.c, a.?b[k]      -> a._opt_sel("b")._opt_sel("c"), ..._opt_idx(k)   (a chain stays optional)
    optional.of(x)       -> _opt_of(x)     (and optional.none(), optional.ofNonZeroValue(x))

`orValue`, `hasValue`, `value` and `or` are methods cel-python parses already; they are functions
here. The rewrite reads the source once, token by token, with an explicit stack (no recursion, no
regular expression that backtracks): it is linear in the length of the source. String literals and
comments are never rewritten. Optional entries of list and map literals (`[?x]`, `{?k: v}`) are
refused as a syntax error, and so is nesting deeper than MAX_DEPTH."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import celpy
from celpy import celtypes


class CELSyntaxError(ValueError):
    """The source is refused before cel-python parses it: malformed optional syntax, a form
    cel-python cannot be given, or nesting past the limit."""


MAX_DEPTH = 250
"""Brackets within brackets, or selections and calls in one chain (`a.b.c(...)[0]...`): cel-go's
parser refuses an expression past 250 levels of recursion; cel-python's evaluator recurses some
ten Python frames a level and would fail at about 200."""


SELECT, INDEX = "_opt_sel", "_opt_idx"
_CONSTRUCTORS = {"of": "_opt_of", "none": "_opt_none", "ofNonZeroValue": "_opt_of_non_zero"}
_OPTIONAL_METHODS = {"or"}  # methods whose result is an optional: selecting on it stays optional

_WHITESPACE = re.compile(r"[\t\n\f\r ]+")
_IDENT = re.compile(r"[_a-zA-Z][_a-zA-Z0-9]*")
_NUMBER = re.compile(
    r"0[xX][0-9a-fA-F]+[uU]?|[0-9]+\.[0-9]+(?:[eE][+-]?[0-9]+)?|[0-9]+[eE][+-]?[0-9]+|[0-9]+[uU]?"
    r"|\.[0-9]+(?:[eE][+-]?[0-9]+)?"
)
_STRING_START = re.compile(r"(?:[bB][rR]?|[rR][bB]?)?('''|\"\"\"|'|\")")
_OPERAND_END = {"ident", "number", "string", ")", "]", "}"}
_OPERATOR_WORDS = {"in"}


@dataclass(frozen=True)
class _Token:
    kind: str  # "ident", "number", "string", or the punctuation character itself
    start: int
    end: int
    text: str


def _string_end(source: str, start: int, quote_start: int) -> int:
    """The end of the string literal whose quotes begin at quote_start (an escape is skipped in all
    but raw strings, as cel-go reads them); raises CELSyntaxError when it does not end."""
    triple = source[quote_start] * 3
    quote = triple if source.startswith(triple, quote_start) else source[quote_start]
    raw = "r" in source[start:quote_start].lower()
    i, n = quote_start + len(quote), len(source)
    while i < n:
        if source.startswith(quote, i):
            return i + len(quote)
        c = source[i]
        if c == "\\" and not raw:
            i += 2
            continue
        if c == "\n" and len(quote) == 1:
            break
        i += 1
    raise CELSyntaxError(f"unterminated string literal at {start}")


def tokens(source: str) -> list[_Token]:
    """The significant tokens of a CEL source (whitespace and comments dropped)."""
    found: list[_Token] = []
    i, n = 0, len(source)
    while i < n:
        c = source[i]
        if c in "\t\n\f\r ":
            match = _WHITESPACE.match(source, i)
            assert match is not None
            i = match.end()
            continue
        if source.startswith("//", i):
            end = source.find("\n", i)
            i = n if end < 0 else end
            continue
        string = _STRING_START.match(source, i)
        if string is not None:
            end = _string_end(source, i, string.start(1))
            found.append(_Token("string", i, end, source[i:end]))
            i = end
            continue
        if c.isdigit() or (c == "." and source[i + 1 : i + 2].isdigit()):
            number = _NUMBER.match(source, i)
            if number is not None:
                found.append(_Token("number", i, number.end(), number.group()))
                i = number.end()
                continue
        ident = _IDENT.match(source, i)
        if ident is not None:
            found.append(_Token("ident", i, ident.end(), ident.group()))
            i = ident.end()
            continue
        found.append(_Token(c, i, i + 1, c))
        i += 1
    return found


@dataclass
class _Frame:
    close: str | None = None  # what the closing bracket becomes
    optional_after: bool = False  # the chain it ends is optional (an optional index, `.or(...)`)
    group: bool = False  # a parenthesized expression: optional after if its last chain was
    chain: bool = False  # the postfix chain at this point is optional (`a.?b` so far)
    links: int = 0  # selections, indexes and calls in the chain at this point


def rewrite(source: str) -> str:
    """The source with CEL's optional syntax rewritten into calls cel-python parses; the source
    itself when it has none. Raises CELSyntaxError."""
    toks = tokens(source)
    edits: list[tuple[int, int, str]] = []
    stack: list[_Frame] = [_Frame()]
    count = len(toks)

    def operand_before(k: int) -> bool:
        if k <= 0:
            return False
        prev = toks[k - 1]
        return prev.kind in _OPERAND_END and not (prev.kind == "ident" and prev.text in _OPERATOR_WORDS)

    def kind_at(k: int) -> str:
        return toks[k].kind if k < count else ""

    k = 0
    while k < count:
        tok = toks[k]
        frame = stack[-1]
        if tok.kind in ".[" and operand_before(k):
            frame.links += 1
        if len(stack) - 1 > MAX_DEPTH or frame.links > MAX_DEPTH:
            raise CELSyntaxError(f"the expression nests deeper than {MAX_DEPTH} levels at {tok.start}")
        if tok.kind == "." and operand_before(k):
            if kind_at(k + 1) == "?":
                if kind_at(k + 2) != "ident":
                    raise CELSyntaxError(f"'.?' at {tok.start} is not followed by a field name")
                name = toks[k + 2]
                edits.append((tok.start, name.end, f'.{SELECT}("{name.text}")'))
                frame.chain = True
                k += 3
                continue
            if kind_at(k + 1) == "ident" and kind_at(k + 2) != "(" and frame.chain:
                name = toks[k + 1]
                edits.append((tok.start, name.end, f'.{SELECT}("{name.text}")'))
                k += 2
                continue
            k += 1  # a method call (its "(" decides what follows) or a plain selection
            continue
        if tok.kind == "[":
            inner = _Frame()
            if operand_before(k) and kind_at(k + 1) == "?":
                edits.append((tok.start, toks[k + 1].end, f".{INDEX}("))
                inner.close, inner.optional_after = ")", True
                k += 1
            elif operand_before(k) and frame.chain:
                edits.append((tok.start, tok.end, f".{INDEX}("))
                inner.close, inner.optional_after = ")", True
            stack.append(inner)
            k += 1
            continue
        if tok.kind in "({":
            inner = _Frame()
            call = k > 0 and toks[k - 1].kind == "ident" and toks[k - 1].text not in _OPERATOR_WORDS
            if tok.kind == "(" and call:
                called = toks[k - 1].text
                method = k >= 2 and toks[k - 2].kind == "."
                constructs = called in _CONSTRUCTORS.values()  # `optional.` before it is gone
                inner.optional_after = constructs or (method and called in _OPTIONAL_METHODS)
            elif tok.kind == "(" and not operand_before(k):
                inner.group = True
            stack.append(inner)
            frame.chain = False
            k += 1
            continue
        if tok.kind in ")]}":
            if len(stack) == 1:
                return source  # unbalanced: the parser says where
            inner = stack.pop()
            if inner.close is not None:
                edits.append((tok.start, tok.end, inner.close))
            stack[-1].chain = inner.optional_after or (inner.group and inner.chain)
            k += 1
            continue
        if tok.kind == "?" and not operand_before(k):
            raise CELSyntaxError(
                f"unexpected '?' at {tok.start} (optional list elements and map entries are not supported)"
            )
        if (
            tok.kind == "ident"
            and tok.text == "optional"
            and not (k and toks[k - 1].kind == ".")
            and kind_at(k + 1) == "."
            and kind_at(k + 2) == "ident"
            and toks[k + 2].text in _CONSTRUCTORS
            and kind_at(k + 3) == "("
        ):
            constructor = _CONSTRUCTORS[toks[k + 2].text]
            edits.append((tok.start, toks[k + 2].end, constructor))
            toks[k + 2] = _Token("ident", toks[k + 2].start, toks[k + 2].end, constructor)
            frame.chain = False
            frame.links = 0
            k += 2  # the "(" sees the constructor's name
            continue
        frame.chain = False
        if not (tok.kind == "ident" and k and toks[k - 1].kind == "."):
            frame.links = 0  # a new operand: not a member's name
        k += 1
    if not edits:
        return source
    out, last = [], 0
    for start, end, text in edits:
        out.append(source[last:start])
        out.append(text)
        last = end
    out.append(source[last:])
    return "".join(out)


def compile_source(env: celpy.Environment, source: str) -> Any:
    """The source parsed by cel-python, its optional syntax rewritten (raises CELSyntaxError
    or cel-python's parse errors)."""
    return env.compile(rewrite(source))


# --- evaluation ------------------------------------------------------------------------------------


class OptionalValue:
    """CEL's optional(T): optional.of(value), or optional.none() when `present` is false."""

    __slots__ = ("present", "value")

    def __init__(self, present: bool, value: Any = None) -> None:
        self.present = present
        self.value = value

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, OptionalValue):
            return NotImplemented
        return self.present == other.present and (not self.present or bool(self.value == other.value))

    def __hash__(self) -> int:
        return hash((self.present, self.value if self.present else None))

    def __repr__(self) -> str:
        return f"optional.of({self.value!r})" if self.present else "optional.none()"


NONE = OptionalValue(False)


def _error(message: str, kind: type[Exception] = ValueError) -> celpy.CELEvalError:
    return celpy.CELEvalError(message, kind, None)


def _lookup(target: Any, key: Any) -> Any:
    """target[key] as an optional: none when a map has no such key or a list no such index."""
    if isinstance(target, celpy.CELEvalError):
        return target
    if isinstance(target, OptionalValue):
        if not target.present:
            return NONE
        target = target.value
    if isinstance(target, celtypes.MapType | celtypes.MessageType):
        try:
            return OptionalValue(True, target[key]) if key in target else NONE
        except TypeError:
            return NONE
    if isinstance(target, celtypes.ListType):
        if isinstance(key, celtypes.IntType | celtypes.UintType) or (
            isinstance(key, celtypes.DoubleType) and float(key).is_integer()
        ):
            index = int(key)
            return OptionalValue(True, target[index]) if 0 <= index < len(target) else NONE
        return _error(f"unsupported index type '{type(key).__name__}' in list", TypeError)
    return NONE  # a string or a number has no fields (cel-go, without ErrorOnBadPresenceTest as Flux)


def _select(target: Any, name: Any) -> Any:
    if isinstance(name, celpy.CELEvalError):
        return name
    return _lookup(target, name)


def _index(target: Any, key: Any) -> Any:
    if isinstance(key, celpy.CELEvalError):
        return key
    return _lookup(target, key)


def _of(value: Any) -> Any:
    if isinstance(value, celpy.CELEvalError):
        return value
    return OptionalValue(True, value)


def _none() -> OptionalValue:
    return NONE


def _zero(value: Any) -> bool:
    if value is None or isinstance(value, celtypes.NullType):
        return True
    if isinstance(value, celtypes.BoolType):
        return not bool(value)
    if isinstance(value, int | float | str | bytes | list | dict):
        return not value
    return False


def _of_non_zero(value: Any) -> Any:
    if isinstance(value, celpy.CELEvalError):
        return value
    return NONE if _zero(value) else OptionalValue(True, value)


def _optional(target: Any, method: str) -> OptionalValue:
    if not isinstance(target, OptionalValue):
        raise TypeError(f"{method}() applies to an optional value, not {type(target).__name__}")
    return target


def _or_value(target: Any, default: Any) -> Any:
    opt = _optional(target, "orValue")
    return opt.value if opt.present else default


def _has_value(target: Any) -> Any:
    return celtypes.BoolType(_optional(target, "hasValue").present)


def _value(target: Any) -> Any:
    opt = _optional(target, "value")
    return opt.value if opt.present else _error("optional.none() dereference")


def _or(target: Any, other: Any) -> Any:
    opt = _optional(target, "or")
    if opt.present:
        return opt
    if isinstance(other, celpy.CELEvalError):
        return other
    return _optional(other, "or")


FUNCTIONS: dict[str, Callable[..., Any]] = {
    SELECT: _select,
    INDEX: _index,
    "_opt_of": _of,
    "_opt_none": _none,
    "_opt_of_non_zero": _of_non_zero,
    "orValue": _or_value,
    "hasValue": _has_value,
    "value": _value,
    "or": _or,
}
"""The functions the rewritten source calls, for cel-python's Environment.program."""
