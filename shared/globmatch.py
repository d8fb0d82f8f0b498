"""Shell globs as regular expressions that cannot backtrack catastrophically.

The textbook translation (`*` to `.*`) of a pattern like `*a*a*a*a…b` makes a backtracking
engine try every way of splitting the text between the stars: exponential in the number of
stars (one `.sourceignore` line or `${v%%…}` held a controller for minutes). Here a glob
`S0*S1*…*Sk`, where each segment S is fixed-width (literals, `?`, classes), becomes

    \\A S0 (?>.*?S1) … (?>.*?Sk-1) .*Sk        (longest, or with \\Z: a full match)
    \\A S0 (?>.*?S1) … (?>.*?Sk)               (shortest)

Placing each middle segment leftmost never loses a match (it leaves the most room for what
follows), so the atomic groups (never re-entered once matched) lose nothing, and the only
quantifier that backtracks is the last `.*`: O(len(text) * len(glob)) steps in all.
"""

from __future__ import annotations

import re
from typing import Literal

Mode = Literal["full", "shortest", "longest"]


def segments(glob: str, classes: bool = True) -> list[list[str]]:
    """The glob's fixed-width segments between `*`s, each a list of one-character regexes.
    classes: `[...]` sets (with `!`/`^` negation) and `\\` escapes, as gitignore and fnmatch;
    otherwise only `*` and `?` are special (envsubst's trim patterns)."""
    out: list[list[str]] = [[]]
    i = 0
    while i < len(glob):
        c = glob[i]
        if c == "*":
            if out[-1] or len(out) == 1:
                out.append([])
        elif c == "?":
            out[-1].append(".")
        elif classes and c == "\\" and i + 1 < len(glob):
            i += 1
            out[-1].append(re.escape(glob[i]))
        elif classes and c == "[":
            j = glob.find("]", i + 2 if i + 1 < len(glob) and glob[i + 1] in "^!" else i + 1)
            if j == -1:
                out[-1].append(re.escape(c))
            else:
                body = glob[i + 1 : j]
                neg = body[:1] in ("^", "!")
                if neg:
                    body = body[1:]
                regex = _char_class(body, neg)
                if regex is None:
                    out[-1].append(re.escape(c))
                else:
                    out[-1].append(regex)
                    i = j
        else:
            out[-1].append(re.escape(c))
        i += 1
    # `a**b` is `a*b`: the loop above dropped empty middle segments; a leading `*` is an empty
    # first segment, a trailing one an empty last segment.
    return out


def _char_class(body: str, negated: bool) -> str | None:
    """`[body]` as a regex set, or None when it is not a valid set (then `[` is literal)."""
    if not body:
        return None
    for special in ("\\", "[", "&", "~", "|"):
        body = body.replace(special, "\\" + special)
    regex = f"[{'^' if negated else ''}{body}]"
    try:
        re.compile(regex)
    except re.error:
        return None
    return regex


def compile_segments(parts: list[list[str]], mode: Mode) -> re.Pattern[str]:
    """The regex of a glob given as segments (see the module's docstring)."""
    head = "".join(parts[0])
    if len(parts) == 1:
        return re.compile(r"\A" + head + (r"\Z" if mode == "full" else ""), re.DOTALL)
    middle = "".join(f"(?>.*?{''.join(seg)})" for seg in parts[1:-1])
    last = "".join(parts[-1])
    if mode == "shortest":
        tail = f"(?>.*?{last})"
    else:
        tail = f".*{last}" + (r"\Z" if mode == "full" else "")
    return re.compile(r"\A" + head + middle + tail, re.DOTALL)


def compile_glob(glob: str, mode: Mode = "full", classes: bool = True) -> re.Pattern[str]:
    return compile_segments(segments(glob, classes), mode)


def reversed_segments(parts: list[list[str]]) -> list[list[str]]:
    """The segments of the glob read backwards: matching it on reversed text finds suffixes."""
    return [list(reversed(seg)) for seg in reversed(parts)]
