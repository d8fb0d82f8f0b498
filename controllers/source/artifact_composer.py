"""The copy operations of an ArtifactGenerator: `@alias/<glob>` -> `@artifact/<path>`, `cp`-like.

Flux's source-watcher semantics:
- `from` without glob characters names a file or a directory. A file goes to `to` (into it when
  `to` ends with '/' or is a directory already); a directory is copied recursively as
  `to/<dirname>` (`@src/` copies the whole source into `to`).
- `from` with a glob is matched component by component (`*`, `?`, `[...]` never cross '/'; `**`
  is a plain `*` there); each match keeps its path under `to`, except that `dir/**` strips `dir/`.
  No match is an error, and so is a selection that `exclude` empties.
- `exclude` patterns (with `**` across directories) match the path from the source root or from
  the literal prefix of `from`; a pattern without '/' matches the file name at any depth.
- strategies: Overwrite (default), Merge (YAML maps merged the way Helm merges values files,
  lists replaced), Extract (`.tar.gz`/`.tgz` unpacked; with a glob, other files are skipped and
  `**` crosses directories).

Everything is hostile: `..`, absolute paths, symlinks leaving a source, and the size and number of
entries of a generated artifact are refused with a CopyError naming the operation.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from tide.controllers.source.tarball import Archive, build_tarball
from tide.shared.artifact import DEFAULT_MAX_ENTRIES, ArtifactError, extract_tarball
from tide.shared.globmatch import compile_glob
from tide.shared.mapmerge import merge_maps

GLOB_CHARS = "*?[]"
TARBALL_SUFFIXES = (".tar.gz", ".tgz")

Parts = tuple[str, ...]


class CopyError(Exception):
    """A copy operation that cannot be carried out (the ArtifactGenerator's BuildFailed message)."""


@dataclass(frozen=True)
class Copy:
    """One copy operation, as plain data (it travels to a build worker)."""

    from_: str
    to: str
    exclude: tuple[str, ...] = ()
    strategy: str = "Overwrite"

    def describe(self) -> str:
        return f"copy from '{self.from_}' to '{self.to}'"


@dataclass(frozen=True)
class Output:
    """One artifact to compose: its copies and the file its tarball is written to."""

    name: str
    copies: tuple[Copy, ...]
    out_file: str


@dataclass
class Budget:
    """What one generated artifact may still write."""

    max_size: int
    max_entries: int
    size: int = 0
    entries: int = 0

    def spend(self, size: int) -> None:
        self.size += size
        self.entries += 1
        if self.max_size and self.size > self.max_size:
            raise CopyError(f"artifact size exceeds the limit of {self.max_size} bytes")
        if self.max_entries and self.entries > self.max_entries:
            raise CopyError(f"artifact exceeds the limit of {self.max_entries} entries (files, directories)")


# -- paths and patterns ---------------------------------------------------------------------------


def _relative_parts(path: str, what: str) -> Parts:
    if "\x00" in path or "\\" in path:
        raise CopyError(f"invalid {what} '{path}'")
    if path.startswith("/"):
        raise CopyError(f"invalid {what} '{path}': must be relative")
    parts = tuple(p for p in path.split("/") if p not in ("", "."))
    if ".." in parts:
        raise CopyError(f"invalid {what} '{path}': must not contain '..'")
    return parts


def parse_from(value: str) -> tuple[str, str]:
    """`@alias/pattern` -> (alias, pattern)."""
    if not value.startswith("@") or "/" not in value:
        raise CopyError(f"invalid copy source '{value}': the format is '@alias/pattern'")
    alias, _, pattern = value[1:].partition("/")
    return alias, pattern


def parse_to(value: str) -> tuple[Parts, bool]:
    """`@artifact/path` -> (path parts, into a directory)."""
    if not value.startswith("@artifact/"):
        raise CopyError(f"invalid copy destination '{value}': must start with '@artifact/'")
    path = value[len("@artifact/") :]
    return _relative_parts(path, "copy destination"), value.endswith("/")


def is_glob(pattern: str) -> bool:
    return any(c in pattern for c in GLOB_CHARS)


@functools.lru_cache(maxsize=1024)
def _component_regex(component: str) -> re.Pattern[str]:
    """Go's path.Match for one path component; an unbalanced bracket is an error, as in Go."""
    literal = re.sub(r"\\.", "", component)
    if literal.count("[") != literal.count("]"):
        raise CopyError(f"invalid glob pattern '{component}': unterminated '['")
    return compile_glob(component)


def match(pattern: Parts, path: Parts, doublestar: bool) -> bool:
    """Whether path matches pattern component by component (`**` spans directories if doublestar).
    Dynamic programming over (pattern, path) positions: many `**` cannot make it exponential."""
    reachable = {0}  # pattern positions that match the path so far
    for part in (*path, None):
        expanded = set()
        todo = list(reachable)
        while todo:  # `**` may match no component: skip it
            i = todo.pop()
            if i in expanded:
                continue
            expanded.add(i)
            if doublestar and i < len(pattern) and pattern[i] == "**":
                todo.append(i + 1)
        if part is None:
            return len(pattern) in expanded
        reachable = set()
        for i in expanded:
            if i >= len(pattern):
                continue
            if doublestar and pattern[i] == "**":
                reachable.add(i)  # `**` takes this component and may take more
            elif _component_regex(pattern[i]).fullmatch(part):
                reachable.add(i + 1)
        if not reachable:
            return False
    return False


def _excluded(path: Parts, base: Parts, patterns: Sequence[str]) -> bool:
    if not patterns:
        return False
    candidates = [path]
    if base and path[: len(base)] == base and len(path) > len(base):
        candidates.append(path[len(base) :])
    for pattern in patterns:
        parts = tuple(p for p in pattern.split("/") if p not in ("", "."))
        if "/" not in pattern and path and match(parts, path[-1:], True):
            return True
        if any(match(parts, c, True) for c in candidates):
            return True
    return False


def _literal_prefix(pattern: Parts) -> Parts:
    prefix: list[str] = []
    for part in pattern:
        if is_glob(part):
            break
        prefix.append(part)
    return tuple(prefix)


# -- the source tree ------------------------------------------------------------------------------


class SourceTree:
    """An extracted source, read without ever leaving its root."""

    def __init__(self, alias: str, root: Path) -> None:
        self.alias = alias
        self.root = root
        self.real_root = os.path.realpath(root)

    def path(self, parts: Parts) -> Path:
        return self.root.joinpath(*parts)

    def resolve(self, parts: Parts) -> os.stat_result | None:
        """The stat of parts (symlinks followed only inside the root); None when missing."""
        path = self.path(parts)
        try:
            st = path.lstat()
        except OSError:
            return None
        if stat.S_ISLNK(st.st_mode):
            real = os.path.realpath(path)
            if real != self.real_root and not real.startswith(self.real_root + os.sep):
                raise CopyError(
                    f"'{'/'.join(parts)}' in source '{self.alias}' is a symlink leaving the source"
                )
            try:
                return os.stat(real)
            except OSError:
                return None
        return st

    def entries(self) -> Iterator[Parts]:
        """Every path in the tree (symlinked directories are listed, not entered), sorted."""
        found: list[Parts] = []
        for directory, dirs, files in os.walk(self.root):
            rel = Path(directory).relative_to(self.root).parts
            for name in (*dirs, *files):
                found.append((*rel, name))
        return iter(sorted(found))

    def glob(self, pattern: Parts, doublestar: bool) -> list[Parts]:
        return [p for p in self.entries() if match(pattern, p, doublestar)]


# -- copying into the staging directory ------------------------------------------------------------


class Staging:
    """The artifact being composed: only directories and regular files we wrote, no symlinks."""

    def __init__(self, root: Path, budget: Budget) -> None:
        self.root = root
        self.budget = budget

    def is_dir(self, parts: Parts) -> bool:
        return self.root.joinpath(*parts).is_dir()

    def exists(self, parts: Parts) -> bool:
        return self.root.joinpath(*parts).exists()

    def mkdirs(self, parts: Parts) -> None:
        for i in range(1, len(parts) + 1):
            path = self.root.joinpath(*parts[:i])
            if path.is_dir():
                continue
            if path.exists():
                raise CopyError(f"cannot create directory '{'/'.join(parts[:i])}': a file is in the way")
            self.budget.spend(0)  # a directory is an entry of the tarball too
            path.mkdir()

    def write_file(self, source: Path, dest: Parts, executable: bool) -> None:
        if not dest:
            raise CopyError("cannot copy a file onto the artifact root")
        self.mkdirs(dest[:-1])
        target = self.root.joinpath(*dest)
        if target.is_dir():
            raise CopyError(f"cannot overwrite directory '{'/'.join(dest)}' with a file")
        self.budget.spend(source.stat().st_size)
        shutil.copyfile(source, target)
        os.chmod(target, 0o755 if executable else 0o644)

    def merge_yaml(self, source: Path, dest: Parts) -> None:
        target = self.root.joinpath(*dest)
        merged = merge_maps(load_yaml_map(target, "/".join(dest)), load_yaml_map(source, source.name))
        data = yaml.safe_dump(merged, sort_keys=True, default_flow_style=False).encode()
        self.budget.spend(len(data))
        target.write_bytes(data)


def load_yaml_map(path: Path, name: str) -> dict[str, object]:
    """All documents of a YAML file merged into one map (Flux reads values files this way)."""
    out: dict[str, object] = {}
    try:
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is None:
                continue
            if not isinstance(doc, dict):
                raise CopyError(f"cannot merge '{name}': a YAML document is not a map")
            out = merge_maps(out, doc)
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise CopyError(f"cannot merge '{name}': invalid YAML: {exc}") from exc
    return out


def _is_tarball(parts: Parts) -> bool:
    return bool(parts) and parts[-1].endswith(TARBALL_SUFFIXES)


@dataclass
class _Operation:
    copy: Copy
    tree: SourceTree
    staging: Staging
    pattern: str
    dest: Parts
    into_dir: bool
    work: Path
    exclude_base: Parts = field(default=())

    def copy_entry(self, src: Parts, dest: Parts) -> None:
        """A file (or a directory, recursively) of the source to dest in the artifact."""
        st = self.tree.resolve(src)
        if st is None:
            return
        if stat.S_ISDIR(st.st_mode):
            if self.tree.path(src).is_symlink():
                return  # a symlinked directory is not entered (no loops, no second copy)
            self.staging.mkdirs(dest)
            for child in sorted(os.listdir(self.tree.path(src))):
                child_src = (*src, child)
                if _excluded(child_src, self.exclude_base, self.copy.exclude):
                    continue
                self.copy_entry(child_src, (*dest, child))
        elif stat.S_ISREG(st.st_mode):
            if self.copy.strategy == "Merge" and self.staging.exists(dest) and not self.staging.is_dir(dest):
                self.staging.merge_yaml(Path(os.path.realpath(self.tree.path(src))), dest)
            else:
                self.staging.write_file(
                    Path(os.path.realpath(self.tree.path(src))), dest, bool(st.st_mode & stat.S_IXUSR)
                )

    def extract(self, src: Parts) -> None:
        """Unpack a tarball of the source under dest (into a scratch directory first, so
        nothing it contains, symlinks included, lands in the artifact unchecked)."""
        scratch = Path(tempfile.mkdtemp(dir=self.work, prefix="extract-"))
        try:
            extract_tarball(
                self.tree.path(src), scratch / "tree", self.staging.budget.max_size or 2**62,
                self.staging.budget.max_entries,
            )  # fmt: skip
        except ArtifactError as exc:
            raise CopyError(f"cannot extract '{'/'.join(src)}': {exc}") from exc
        unpacked = _Operation(
            Copy(self.copy.from_, self.copy.to), SourceTree(self.tree.alias, scratch / "tree"), self.staging,
            "", self.dest, True, self.work,
        )  # fmt: skip
        unpacked.staging.mkdirs(self.dest)
        for child in sorted(os.listdir(scratch / "tree")):
            unpacked.copy_entry((child,), (*self.dest, child))
        shutil.rmtree(scratch, ignore_errors=True)

    def run(self) -> None:
        pattern = _relative_parts(self.pattern, "copy source")
        if not is_glob(self.pattern):
            self._single(pattern)
        else:
            self._glob(pattern)

    def _single(self, src: Parts) -> None:
        st = self.tree.resolve(src)
        if st is None:
            raise CopyError(f"source '{'/'.join(src) or '.'}' does not exist in '@{self.tree.alias}'")
        if stat.S_ISDIR(st.st_mode):
            if self.copy.strategy == "Extract":
                raise CopyError(f"the Extract strategy does not take a directory: '{'/'.join(src)}'")
            self.exclude_base = src
            self.copy_entry(src, (*self.dest, *src[-1:]))
            return
        if _excluded(src, (), self.copy.exclude):
            return
        if self.copy.strategy == "Extract":
            if not _is_tarball(src):
                raise CopyError(f"the Extract strategy needs a .tar.gz or .tgz file, not '{'/'.join(src)}'")
            self.extract(src)
            return
        dest = self.dest
        if self.into_dir or self.staging.is_dir(dest):
            dest = (*dest, src[-1])
        self.copy_entry(src, dest)

    def _glob(self, pattern: Parts) -> None:
        extract = self.copy.strategy == "Extract"
        matches = self.tree.glob(pattern, doublestar=extract)
        if not matches:
            raise CopyError(f"no files match pattern '{self.pattern}' in source '{self.tree.alias}'")
        self.exclude_base = _literal_prefix(pattern)
        kept = [m for m in matches if not _excluded(m, self.exclude_base, self.copy.exclude)]
        if not kept:
            raise CopyError(
                f"all files matching pattern '{self.pattern}' in source '{self.tree.alias}' were excluded"
            )
        strip = pattern[:-1] if pattern[-1:] == ("**",) else None
        for found in kept:
            if extract:
                if _is_tarball(found) and not self.tree.path(found).is_dir():
                    self.extract(found)
                continue
            rel = found[len(strip) :] if strip is not None and found[: len(strip)] == strip else found
            self.copy_entry(found, (*self.dest, *rel))


def apply_copies(copies: Sequence[Copy], trees: dict[str, SourceTree], staging: Staging, work: Path) -> None:
    """Run the copy operations in order (later ones overwrite earlier ones)."""
    for op in copies:
        alias, pattern = parse_from(op.from_)
        tree = trees.get(alias)
        if tree is None:
            raise CopyError(f"{op.describe()}: source alias '{alias}' not found")
        dest, into_dir = parse_to(op.to)
        for exclude in op.exclude:
            try:
                for part in exclude.split("/"):
                    _component_regex(part)
            except CopyError as exc:
                raise CopyError(f"{op.describe()}: invalid exclude pattern '{exclude}'") from exc
        try:
            _Operation(op, tree, staging, pattern, dest, into_dir, work).run()
        except CopyError as exc:
            raise CopyError(f"{op.describe()}: {exc}") from exc
        except OSError as exc:
            raise CopyError(f"{op.describe()}: {exc.strerror or exc}") from exc


def generate(
    sources: dict[str, str],
    outputs: Sequence[Output],
    workdir: str,
    max_size: int,
    max_entries: int = DEFAULT_MAX_ENTRIES,
) -> list[Archive]:
    """In a build worker: extract each source artifact (alias -> tar.gz), compose each output in its
    own staging directory and write its deterministic tarball. CopyError names what failed."""
    work = Path(workdir)
    trees: dict[str, SourceTree] = {}
    for alias, archive in sorted(sources.items()):
        root = work / "sources" / alias
        try:
            extract_tarball(Path(archive), root, max_size or 2**62, max_entries)
        except ArtifactError as exc:
            raise CopyError(f"cannot extract the artifact of source '{alias}': {exc}") from exc
        trees[alias] = SourceTree(alias, root)
    archives = []
    for index, output in enumerate(outputs):
        root = work / "outputs" / str(index)
        root.mkdir(parents=True)
        try:
            apply_copies(output.copies, trees, Staging(root, Budget(max_size, max_entries)), work)
        except CopyError as exc:
            raise CopyError(f"{output.name} build failed: {exc}") from exc
        archives.append(build_tarball(root, Path(output.out_file), max_size=max_size))
    return archives
