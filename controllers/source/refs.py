"""Git references: Flux's precedence, semver ranges over tags, and revision strings.

Pure functions over a ref listing (`{b"refs/heads/main": b"<sha>", b"refs/tags/v1^{}": ...}`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import semver

from tide.shared.api.source import GitRepositoryRef

DEFAULT_BRANCH = "master"
PEELED = b"^{}"


class RefNotFound(Exception):
    pass


class InvalidSemver(Exception):
    pass


@dataclass(frozen=True)
class Target:
    """What to fetch: a ref name (None for a bare commit), and what it points at."""

    kind: str  # branch | tag | semver | name | commit
    ref: str | None  # full ref, e.g. refs/heads/main
    want: str  # sha to ask the server for (annotated tag object or commit)
    commit: str | None  # the commit, when the listing tells it (peeled)
    branch: str | None = None  # the branch a commit ref lives on, if given

    @property
    def is_tag(self) -> bool:
        return self.ref is not None and self.ref.startswith("refs/tags/")


def revision(target: Target, commit: str) -> str:
    """Flux's revision string: `main@sha1:<hex>`, `v1.2.3@sha1:<hex>`, `refs/pull/1/head@sha1:<hex>`,
    or `sha1:<hex>` for a commit without branch."""
    if target.kind == "name" and target.ref:
        return f"{target.ref}@sha1:{commit}"
    ref = target.ref
    if target.kind == "commit":
        ref = f"refs/heads/{target.branch}" if target.branch else None
    if ref:
        short = ref.split("/", 2)
        if len(short) == 3:
            return f"{short[2]}@sha1:{commit}"
    return f"sha1:{commit}"


def commit_of_revision(rev: str) -> str:
    return rev.rsplit("sha1:", 1)[-1]


def _lookup(refs: Mapping[bytes, bytes], name: str) -> tuple[str, str | None] | None:
    key = name.encode()
    if key not in refs:
        return None
    value = refs[key].decode()
    peeled = refs.get(key + PEELED)
    # Servers advertise `<tag>^{}` for every annotated tag; without it the ref is the commit.
    return value, (peeled.decode() if peeled else value)


def choose(ref: GitRepositoryRef | None, refs: Mapping[bytes, bytes] | None) -> Target:
    """Apply Flux's precedence (commit > name > semver > tag > branch) against a listing.

    refs may be None only for a commit reference (nothing to look up).
    """
    ref = ref or GitRepositoryRef()
    if ref.commit:
        commit = ref.commit.lower()
        if not re.fullmatch(r"[0-9a-f]{40}", commit):
            raise RefNotFound(f"invalid commit '{ref.commit}': expected a full 40 character SHA-1")
        return Target("commit", None, commit, commit, branch=ref.branch)
    assert refs is not None
    if ref.name:
        found = _lookup(refs, ref.name)
        if found is None:
            raise RefNotFound(f"couldn't find remote ref '{ref.name}'")
        return Target("name", ref.name, found[0], found[1])
    if ref.semver:
        tag = highest_matching_tag(refs, ref.semver)
        found = _lookup(refs, f"refs/tags/{tag}")
        assert found
        return Target("semver", f"refs/tags/{tag}", found[0], found[1])
    if ref.tag:
        found = _lookup(refs, f"refs/tags/{ref.tag}")
        if found is None:
            raise RefNotFound(f"couldn't find remote ref 'refs/tags/{ref.tag}'")
        return Target("tag", f"refs/tags/{ref.tag}", found[0], found[1])
    branch = ref.branch or DEFAULT_BRANCH
    found = _lookup(refs, f"refs/heads/{branch}")
    if found is None:
        raise RefNotFound(f"couldn't find remote ref 'refs/heads/{branch}'")
    return Target("branch", f"refs/heads/{branch}", found[0], found[1])


def ref_prefixes(ref: GitRepositoryRef | None) -> list[bytes]:
    """The refs a listing needs, so servers that filter (protocol v2) send little."""
    ref = ref or GitRepositoryRef()
    if ref.commit:
        return []
    if ref.name:
        return [ref.name.encode()]
    if ref.semver:
        return [b"refs/tags/"]
    if ref.tag:
        return [f"refs/tags/{ref.tag}".encode()]
    return [f"refs/heads/{ref.branch or DEFAULT_BRANCH}".encode()]


# Semver ranges with Masterminds/semver (v3) rules, as Flux uses them.

_VERSION = re.compile(
    r"^v?(0|[1-9]\d*)(?:\.(0|[1-9]\d*))?(?:\.(0|[1-9]\d*))?"
    r"(?:-([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?(?:\+([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?$"
)
_CONSTRAINT_VERSION = re.compile(
    r"^v?([0-9]+|[xX*])(?:\.([0-9]+|[xX*]))?(?:\.([0-9]+|[xX*]))?"
    r"(?:-([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?(?:\+[0-9A-Za-z-.]+)?$"
)
_OPS = ("!=", ">=", "=>", "<=", "=<", "~>", ">", "<", "=", "~", "^")


def parse_version(text: str) -> semver.Version | None:
    """Lenient like Masterminds' NewVersion: `v1`, `1.2` and `v1.2.3-rc.1` all parse."""
    m = _VERSION.match(text)
    if not m:
        return None
    major, minor, patch, pre, build = m.groups()
    return semver.Version(int(major), int(minor or 0), int(patch or 0), pre, build)


Check = Callable[[semver.Version], bool]


def _comparator(op: str, text: str) -> tuple[Check, bool]:
    m = _CONSTRAINT_VERSION.match(text)
    if not m:
        raise InvalidSemver(f"improper constraint: {op}{text}")
    raw = [m.group(1), m.group(2), m.group(3)]
    pre = m.group(4)
    wild_at = next((i for i, p in enumerate(raw) if p is None or p in "xX*"), 3)
    nums = [int(p) if p is not None and p not in "xX*" else 0 for p in raw]
    v = semver.Version(nums[0], nums[1], nums[2], pre)
    explicit = next((i for i, p in enumerate(raw) if p is None), 3)  # parts given (wildcards count)

    def upper(level: int) -> semver.Version:
        if level <= 0:
            return semver.Version(nums[0] + 1, 0, 0, "0")
        if level == 1:
            return semver.Version(nums[0], nums[1] + 1, 0, "0")
        return semver.Version(nums[0], nums[1], nums[2] + 1, "0")

    if op in ("", "=") and wild_at < 3:
        if wild_at == 0:
            return (lambda x: True), bool(pre)
        hi = upper(wild_at - 1)
        return (lambda x: v <= x < hi), bool(pre)
    if op == "!=":
        if wild_at < 3:
            if wild_at == 0:
                return (lambda x: False), bool(pre)
            hi = upper(wild_at - 1)
            return (lambda x: not (v <= x < hi)), bool(pre)
        return (lambda x: x != v), bool(pre)
    if op in ("", "="):
        return (lambda x: x == v), bool(pre)
    if op == ">":
        if wild_at < 3 and wild_at > 0:
            hi = upper(wild_at - 1)
            return (lambda x: x >= hi), bool(pre)
        return (lambda x: x > v), bool(pre)
    if op in (">=", "=>"):
        return (lambda x: x >= v), bool(pre)
    if op == "<":
        return (lambda x: x < v), bool(pre)
    if op in ("<=", "=<"):
        if wild_at < 3 and wild_at > 0:
            hi = upper(wild_at - 1)
            return (lambda x: x < hi), bool(pre)
        return (lambda x: x <= v), bool(pre)
    if op in ("~", "~>"):
        hi = upper(0 if explicit == 1 or wild_at == 1 else 1)
        if wild_at == 0:
            return (lambda x: True), bool(pre)
        return (lambda x: v <= x < hi), bool(pre)
    if op == "^":
        if wild_at == 0:
            return (lambda x: True), bool(pre)
        if nums[0] > 0 or wild_at == 1 or explicit == 1:
            hi = upper(0)
        elif nums[1] > 0 or wild_at == 2 or explicit == 2:
            hi = upper(1)
        else:
            hi = upper(2)
        return (lambda x: v <= x < hi), bool(pre)
    raise InvalidSemver(f"improper constraint: {op}{text}")


def parse_constraint(constraint: str) -> Check:
    """A Masterminds-style range: `>=1.0.0 <2.0.0`, `~1.2`, `^0.3`, `1.x`, `1.0 - 1.4`, `a || b`."""
    groups: list[list[tuple[Check, bool]]] = []
    for alternative in constraint.split("||"):
        text = alternative.strip()
        if not text:
            raise InvalidSemver(f"improper constraint: {constraint}")
        hyphen = re.fullmatch(r"(\S+)\s+-\s+(\S+)", text)
        if hyphen:
            groups.append([_comparator(">=", hyphen.group(1)), _comparator("<=", hyphen.group(2))])
            continue
        text = re.sub(r"(!=|>=|=>|<=|=<|~>|>|<|=|~|\^)\s+", r"\1", text)
        comparators = []
        for token in re.split(r"[\s,]+", text):
            if not token:
                continue
            op = next((o for o in _OPS if token.startswith(o)), "")
            comparators.append(_comparator(op, token[len(op) :]))
        groups.append(comparators)

    def check(version: semver.Version) -> bool:
        for group in groups:
            if version.prerelease and not any(has_pre for _, has_pre in group):
                continue
            if all(c(version) for c, _ in group):
                return True
        return False

    return check


def highest_version(tags: Iterable[str], check: Check) -> str | None:
    """The tag whose version is the highest that check accepts (tags that are no version skipped)."""
    best: tuple[semver.Version, str] | None = None
    for tag in tags:
        version = parse_version(tag)
        if version is None or not check(version):
            continue
        if best is None or version > best[0]:
            best = (version, tag)
    return best[1] if best is not None else None


def highest_matching_tag(refs: Mapping[bytes, bytes], constraint: str) -> str:
    tags = (
        key[len(b"refs/tags/") :].decode(errors="replace")
        for key in refs
        if key.startswith(b"refs/tags/") and not key.endswith(PEELED)
    )
    found = highest_version(tags, parse_constraint(constraint))
    if found is None:
        raise RefNotFound(f"no match found for semver: {constraint}")
    return found
