"""`.sourceignore` and `spec.ignore`: gitignore patterns with Flux's semantics.

Patterns are evaluated per file against its full relative path, last match wins (a `!`
pattern re-includes). A pattern read from `a/b/.sourceignore` only applies below `a/b`.
When the repository or the spec brings any pattern, Flux's default excludes are dropped
and only the VCS excludes stay.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tide.shared.globmatch import compile_glob

IGNORE_FILE = ".sourceignore"

VCS_PATTERNS = (".git/", ".gitignore", ".gitmodules", ".gitattributes")
DEFAULT_PATTERNS = (
    "*.jpg",
    "*.jpeg",
    "*.gif",
    "*.png",
    "*.wmv",
    "*.flv",
    "*.tar.gz",
    "*.zip",
    ".github/",
    ".circleci/",
    ".travis.yml",
    ".gitlab-ci.yml",
    "appveyor.yml",
    ".drone.yml",
    "cloudbuild.yaml",
    "codeship-services.yml",
    "codeship-steps.yml",
    "**/.goreleaser.yml",
    "**/.sops.yaml",
    "**/.flux.yaml",
)


@dataclass(frozen=True)
class Pattern:
    """One gitignore line bound to the directory (domain) its file lives in."""

    parts: tuple[str, ...]
    domain: tuple[str, ...] = ()
    inclusion: bool = False
    dir_only: bool = False
    is_glob: bool = False
    _regexes: tuple[re.Pattern[str] | None, ...] = field(default=(), compare=False, repr=False)

    @classmethod
    def parse(cls, line: str, domain: Sequence[str] = ()) -> Pattern:
        inclusion = line.startswith("!")
        if inclusion:
            line = line[1:]
        if not line.endswith("\\ "):
            line = line.rstrip(" ")
        dir_only = line.endswith("/")
        if dir_only:
            line = line[:-1]
        is_glob = "/" in line
        parts = tuple(line.split("/"))
        # Linear-time regexes: a hostile `*a*a*a…b` line cannot make matching exponential.
        regexes = tuple(None if p in ("", "**") else compile_glob(p) for p in parts)
        return cls(parts, tuple(domain), inclusion, dir_only, is_glob, regexes)

    def match(self, path: Sequence[str], is_dir: bool) -> bool:
        if len(path) <= len(self.domain) or tuple(path[: len(self.domain)]) != self.domain:
            return False
        rest = list(path[len(self.domain) :])
        return self._glob_match(rest, is_dir) if self.is_glob else self._name_match(rest, is_dir)

    def _name_match(self, path: list[str], is_dir: bool) -> bool:
        regex = self._regexes[0]
        for i, name in enumerate(path):
            if regex is None or not regex.match(name):
                continue
            if self.dir_only and not is_dir and i == len(path) - 1:
                return False
            return True
        return False

    def _glob_match(self, path: list[str], is_dir: bool) -> bool:
        matched = False
        can_traverse = False
        for i, part in enumerate(self.parts):
            if part == "":
                can_traverse = False
                continue
            if part == "**":
                if i == len(self.parts) - 1:
                    break
                can_traverse = True
                continue
            if "**" in part:
                return False
            if not path:
                return False
            regex = self._regexes[i]
            assert regex is not None
            if can_traverse:
                can_traverse = False
                while path:
                    name = path.pop(0)
                    if regex.match(name):
                        matched = True
                        break
                    if not path:
                        matched = False
            else:
                if not regex.match(path[0]):
                    return False
                matched = True
                path = path[1:]
        if matched and self.dir_only and not is_dir and not path:
            return False
        return matched


def read_patterns(text: str, domain: Sequence[str] = ()) -> list[Pattern]:
    return [
        Pattern.parse(line, domain) for line in text.splitlines() if not line.startswith("#") and line.strip()
    ]


def load_ignore_patterns(root: Path) -> list[Pattern]:
    """Read every .sourceignore below root (root first, then directories in sorted order)."""
    patterns: list[Pattern] = []

    def visit(directory: Path, domain: tuple[str, ...]) -> None:
        ignore_file = directory / IGNORE_FILE
        if ignore_file.is_file() and not ignore_file.is_symlink():
            patterns.extend(read_patterns(ignore_file.read_text(errors="replace"), domain))
        with os.scandir(directory) as it:
            subdirs = sorted(e.name for e in it if e.is_dir(follow_symlinks=False) and e.name != ".git")
        for name in subdirs:
            visit(directory / name, (*domain, name))

    visit(root, ())
    return patterns


@dataclass
class Matcher:
    """Last matching pattern decides; an exclusion means the path is ignored."""

    patterns: list[Pattern]

    def ignored(self, path: Sequence[str], is_dir: bool = False) -> bool:
        for pattern in reversed(self.patterns):
            if pattern.match(path, is_dir):
                return not pattern.inclusion
        return False


def build_matcher(user_patterns: Iterable[Pattern]) -> Matcher:
    """Flux's SourceIgnoreFilter: defaults unless the user brings patterns; VCS always."""
    user = list(user_patterns)
    base = [Pattern.parse(p) for p in VCS_PATTERNS]
    if not user:
        base += [Pattern.parse(p) for p in DEFAULT_PATTERNS]
    return Matcher(base + user)


def matcher_for_tree(root: Path, spec_ignore: str | None) -> Matcher:
    patterns = load_ignore_patterns(root)
    if spec_ignore is not None:
        patterns += read_patterns(spec_ignore)
    return build_matcher(patterns)
