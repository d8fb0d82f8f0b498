"""Build a Kustomization's path with the real `kustomize`, as Flux does.

Steps: resolve `spec.path` inside the artifact root; refuse symlinks and references that leave the
root (CVE-2022-24877), `file://` bases and, with `--no-remote-bases`, anything kustomize would fetch;
generate a kustomization.yaml when the path has none; merge the Kustomization's overrides into it; run
`kustomize build` with no plugins; split the output into documents (text kept: substitution works on
kustomize's own text).

Files are confined by kustomize itself (`--load-restrictor LoadRestrictionsRootOnly`): every file any
kustomization loads, including those named inside generator and transformer configs (files or inline),
must be in or below that kustomization's directory. Flux allows a kustomization to name files anywhere
in the artifact, so before the build each such reference found in a kustomization file is replaced by
a link to the same file inside the kustomization's own directory. Directories (bases, components) are
not restricted by kustomize: the walk below keeps them in the artifact.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import math
import os
import re
import shutil
import signal
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tide.shared.artifact.fetch import replace_file

KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
KUSTOMIZE_API_VERSION = "kustomize.config.k8s.io/v1beta1"
# What kustomize fetches (its repospec and loader, in any letter case): a forced protocol (`git::`), any
# `scheme://`, shorthands (`gh:`, `github.com/...`) and scp-style `user@host:path`.
_FETCHED = re.compile(
    r"^([a-z][a-z0-9+.-]*::|[a-z][a-z0-9+.-]*://|gh:|github\.com[/:]|[a-z][a-z0-9-]*@)", re.I
)
_FILE_URL = re.compile(r"^([a-z][a-z0-9+.-]*::)?file:", re.I)
# Flux-legal files outside a kustomization's directory are linked into it under this prefix.
_OUTSIDE_LINKS = ".tide-ref-"
# kustomize's memory ceiling; a 400-byte alias bomb in a resource otherwise takes gigabytes. A small
# build needs about 100 MiB.
DEFAULT_MEMORY_LIMIT = 1 << 30
# Cores one build may keep busy; its CPU time limit is this many times its timeout.
KUSTOMIZE_THREADS = 2

try:
    _Loader: Any = yaml.CSafeLoader
    _Dumper: Any = yaml.CSafeDumper
except AttributeError:  # pragma: no cover
    _Loader = yaml.SafeLoader
    _Dumper = yaml.SafeDumper


class BuildError(Exception):
    """The path cannot be built; retrying the same revision will not help (Flux: BuildFailed)."""


class BuildNotFinished(BuildError):
    """kustomize is missing or did not finish in time: the same revision may build on a retry."""


class ReferenceRefused(BuildError):
    """A reference leaves the artifact (a path, a symlink, a `file://` base)."""


class RemoteBasesDisabled(BuildError):
    """A reference kustomize would fetch, with --no-remote-bases."""


class SymlinkLoop(BuildError):
    """A symlink in the artifact that never resolves."""


class BuildLimitExceeded(BuildError):
    """kustomize was killed for going over its memory or CPU limit."""


class BuildTimeout(BuildNotFinished):
    pass


class KustomizeNotFound(BuildNotFinished):
    pass


@dataclass
class Document:
    """One object of the build output with the text kustomize printed for it."""

    obj: dict[str, Any]
    text: str | None


def find_kustomization_file(directory: Path) -> Path | None:
    for name in KUSTOMIZATION_FILES:
        candidate = directory / name
        if candidate.is_file():
            return candidate
    return None


def _inside(root: Path, path: Path) -> bool:
    try:
        path.relative_to(root)
        return True
    except ValueError:
        return False


def _resolve(path: Path, root: Path) -> Path:
    """The real path; a symlink loop is a build error (Path.resolve raises RuntimeError or OSError)."""
    try:
        return Path(os.path.realpath(path, strict=True))
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise SymlinkLoop(f"'{_rel(root, path)}' is a symlink loop") from None
        return Path(os.path.realpath(path))  # missing: kustomize reports what it cannot find


def resolve_path(root: Path, path: str | None) -> Path:
    """spec.path relative to the artifact root; `..` or a symlink leading out is refused."""
    root = root.resolve()
    rel = (path or "./").lstrip("/")
    target = _resolve(root / rel, root)
    if not _inside(root, target):
        raise ReferenceRefused(f"path '{path}' is outside the source artifact root")
    if not target.is_dir():
        raise BuildError(f"kustomization path not found: '{path}' is not a directory in the artifact")
    return target


def check_symlinks(root: Path) -> None:
    """Every symlink in the artifact must resolve, inside it."""
    root = root.resolve()
    pending = [str(root)]
    while pending:
        # scandir's entry types come with the listing: no stat per file (this runs on every build)
        with os.scandir(pending.pop()) as entries:
            for entry in entries:
                if entry.is_symlink():
                    p = Path(entry.path)
                    if not _inside(root, _resolve(p, root)):
                        raise ReferenceRefused(
                            f"symlink '{p.relative_to(root)}' points outside the source artifact root"
                        )
                elif entry.is_dir():
                    pending.append(entry.path)


def is_fetched(entry: str) -> bool:
    """Whether kustomize would download entry (a remote base or file) rather than read the artifact."""
    return bool(_FETCHED.match(entry.strip()))


@dataclass
class Reference:
    """One file or directory a kustomization file names, and how to rewrite it there."""

    field: str
    entry: str
    replace: Callable[[str], None]


def _list(value: Any) -> list[Any]:
    """value when it is a list (written back through), else an empty list."""
    return value if isinstance(value, list) else []


def _item_setter(items: list[Any], index: int, prefix: str = "") -> Callable[[str], None]:
    def replace(new: str) -> None:
        items[index] = prefix + new

    return replace


def _key_setter(mapping: dict[str, Any], key: str) -> Callable[[str], None]:
    def replace(new: str) -> None:
        mapping[key] = new

    return replace


def _path_entries(kus: dict[str, Any]) -> Iterator[Reference]:
    """Every file or directory a kustomization file names (inline documents are not paths)."""
    for field in (
        "resources",
        "bases",
        "components",
        "crds",
        "configurations",
        "generators",
        "transformers",
        "validators",
    ):
        items = _list(kus.get(field))
        for i, entry in enumerate(items):
            if isinstance(entry, str) and "\n" not in entry:
                yield Reference(field, entry, _item_setter(items, i))
    items = _list(kus.get("patchesStrategicMerge"))
    for i, entry in enumerate(items):
        if isinstance(entry, str) and "\n" not in entry and ":" not in entry:
            yield Reference("patchesStrategicMerge", entry, _item_setter(items, i))
    for field in ("patches", "patchesJson6902", "replacements"):
        for entry in kus.get(field) or []:
            if isinstance(entry, dict) and isinstance(entry.get("path"), str):
                yield Reference(field, entry["path"], _key_setter(entry, "path"))
    for field in ("configMapGenerator", "secretGenerator"):
        for gen in kus.get(field) or []:
            if not isinstance(gen, dict):
                continue
            files = _list(gen.get("files"))
            for i, f in enumerate(files):
                if isinstance(f, str):
                    key, sep, path = f.partition("=") if "=" in f else ("", "", f)
                    yield Reference(field, path, _item_setter(files, i, key + sep))
            envs = _list(gen.get("envs"))
            for i, f in enumerate(envs):
                if isinstance(f, str):
                    yield Reference(field, f, _item_setter(envs, i))
            if isinstance(gen.get("env"), str):
                yield Reference(field, gen["env"], _key_setter(gen, "env"))
    openapi = kus.get("openapi")
    if isinstance(openapi, dict) and isinstance(openapi.get("path"), str):
        yield Reference("openapi", openapi["path"], _key_setter(openapi, "path"))
    globals_ = kus.get("helmGlobals")
    if isinstance(globals_, dict) and isinstance(globals_.get("chartHome"), str):
        yield Reference("helmGlobals", globals_["chartHome"], _key_setter(globals_, "chartHome"))


def load_kustomization_file(path: Path) -> dict[str, Any]:
    try:
        data = yaml.load(path.read_text(), Loader=_Loader)
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise BuildError(f"invalid kustomization file {path.name}: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise BuildError(f"invalid kustomization file {path.name}: not a YAML mapping")
    return data


def check_references(root: Path, directory: Path, no_remote_bases: bool) -> None:
    """Walk every kustomization reachable from directory: directories must stay inside root, `file://`
    is refused, fetched references only with remote bases on. A file inside root but outside the
    kustomization's own directory is linked into it (the entry rewritten) so that kustomize's root-only
    load restriction accepts it."""
    root = root.resolve()
    seen: set[Path] = set()
    pending = [directory.resolve()]
    while pending:
        current = pending.pop()
        if current in seen:
            continue
        seen.add(current)
        kfile = find_kustomization_file(current)
        if kfile is None:
            continue
        kus = load_kustomization_file(kfile)
        rewritten = False
        for ref in _path_entries(kus):
            where = f"{ref.field} '{ref.entry}' in {_rel(root, kfile)}"
            if _FILE_URL.match(ref.entry.strip()):
                raise ReferenceRefused(f"{where}: file:// references are not allowed")
            if is_fetched(ref.entry):
                if no_remote_bases:
                    raise RemoteBasesDisabled(
                        f"{where} is a remote reference and remote bases are disabled (--no-remote-bases)"
                    )
                if not os.path.lexists(current / ref.entry):
                    continue  # fetched; what kustomize takes as local after all is checked below
            if os.path.isabs(ref.entry):
                raise ReferenceRefused(f"{where}: absolute paths are not allowed")
            target = _resolve(current / ref.entry, root)
            if not _inside(root, target):
                raise ReferenceRefused(f"{where} is outside the source artifact root")
            if target.is_dir():
                pending.append(target)
            elif target.is_file() and not _inside(current, target):
                ref.replace(_link_inside(current, target))
                rewritten = True
        if rewritten:
            text = yaml.dump(kus, Dumper=_Dumper, sort_keys=False, default_flow_style=False)
            replace_file(kfile, text.encode())


def build_inputs(root: Path, spec: Mapping[str, Any]) -> list[str] | None:
    """What a build of spec.path can read, relative to root: spec.path's directory and the components
    spec names, then every directory and file a kustomization file in those names, followed through
    theirs; each directory whole. None when that is the whole tree, or when it cannot be told without a
    build's own checks (a symlink on the way, a reference leaving the root or refused, spec.path
    missing): the build then gets everything and its checks answer as always. A Kustomization of one
    path of a monorepo then copies its path, not the repository (a copy per reconcile)."""
    top = os.path.realpath(root)

    def local(path: str) -> str | None:
        norm = os.path.normpath(path)
        inside = norm == top or norm.startswith(top + os.sep)
        # realpath differs when a symlink is on the way: the build's checks decide about those.
        return norm if inside and os.path.realpath(norm) == norm else None

    start = local(os.path.join(top, str(spec.get("path") or "./").lstrip("/")))
    if start is None or start == top or not os.path.isdir(start):
        return None
    pending = [start]
    for component in spec.get("components") or []:
        target = local(os.path.join(start, str(component)))
        if target is None:
            return None
        if os.path.isdir(target):
            pending.append(target)
    taken: list[str] = []
    files: set[str] = set()

    def covered(path: str) -> bool:
        return any(path == d or path.startswith(d + os.sep) for d in taken)

    while pending:
        directory = pending.pop()
        if covered(directory):
            continue
        if directory == top:
            return None
        taken.append(directory)
        walk = [directory]
        while walk:
            current = walk.pop()
            names = set()
            with os.scandir(current) as entries:
                for entry in entries:
                    if entry.is_symlink():
                        return None
                    if entry.is_dir():
                        walk.append(entry.path)
                    names.add(entry.name)
            kname = next((n for n in KUSTOMIZATION_FILES if n in names), None)
            if kname is None:
                continue
            try:
                kus = load_kustomization_file(Path(current, kname))
            except BuildError:
                return None
            for ref in _path_entries(kus):
                if _FILE_URL.match(ref.entry.strip()) or os.path.isabs(ref.entry):
                    return None
                if is_fetched(ref.entry) and not os.path.lexists(os.path.join(current, ref.entry)):
                    continue
                target = local(os.path.join(current, ref.entry))
                if target is None:
                    return None
                if os.path.isdir(target):
                    pending.append(target)
                elif os.path.isfile(target):
                    files.add(target)
    inputs = [d for d in taken if not any(d != o and d.startswith(o + os.sep) for o in taken)]
    inputs += [f for f in files if not covered(f)]
    return sorted(os.path.relpath(p, top) for p in inputs)


def _link_inside(directory: Path, target: Path) -> str:
    """A link to target (a file of the artifact) in a new folder of directory, same base name."""
    holder = Path(tempfile.mkdtemp(prefix=_OUTSIDE_LINKS, dir=directory))
    link = holder / target.name
    try:
        os.link(target, link)
    except OSError:
        shutil.copy2(target, link)
    return str(link.relative_to(directory))


def _rel(root: Path, p: Path) -> str:
    try:
        return str(p.relative_to(root))
    except ValueError:
        return str(p)


def _kubernetes_objects(path: Path) -> int:
    """How many objects a Kubernetes YAML file holds (a List's items each); a file that is not
    Kubernetes YAML is a build error, as in Flux's generator."""
    try:
        docs = [d for d in yaml.load_all(path.read_text(), Loader=_Loader) if d is not None]
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise BuildError(f"failed to decode Kubernetes YAML from {path.name}: {exc}") from exc
    count = 0
    for doc in docs:
        if not isinstance(doc, dict) or "apiVersion" not in doc or "kind" not in doc:
            raise BuildError(f"failed to decode Kubernetes YAML from {path.name}: missing apiVersion or kind")
        items = doc.get("items") if str(doc["kind"]).endswith("List") else None
        count += len(items) if isinstance(items, list) else 1
    return count


@dataclass(frozen=True)
class GeneratedResource:
    """One entry of a generated kustomization: a YAML file (with its object count) or a directory
    with a kustomization of its own (objects None: unknown until built)."""

    path: str
    objects: int | None


def generate_resources(directory: Path) -> list[GeneratedResource]:
    """Flux's generated resources: every .yaml/.yml under directory, and every subdirectory that has its
    own kustomization file (not descended into), in walk order."""
    resources: list[GeneratedResource] = []

    def walk(current: Path) -> None:
        for entry in sorted(current.iterdir(), key=lambda p: p.name):
            if entry.is_dir() and not entry.is_symlink():  # as Flux's walk: links are not followed
                if find_kustomization_file(entry):
                    resources.append(GeneratedResource(str(entry.relative_to(directory)), None))
                else:
                    walk(entry)
            elif entry.suffix in (".yaml", ".yml") and entry.is_file():
                resources.append(
                    GeneratedResource(str(entry.relative_to(directory)), _kubernetes_objects(entry))
                )

    walk(directory)
    return resources


def _selector(target: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if not target:
        return None
    keys = ("group", "version", "kind", "name", "namespace", "labelSelector", "annotationSelector")
    return {k: target[k] for k in keys if target.get(k)}


def merge_overrides(kus: dict[str, Any], spec: Mapping[str, Any]) -> dict[str, Any]:
    """The Kustomization's spec merged into kustomization.yaml as Flux's generator does."""
    out = dict(kus)
    out.setdefault("apiVersion", KUSTOMIZE_API_VERSION)
    out.setdefault("kind", "Kustomization")
    if spec.get("targetNamespace"):
        out["namespace"] = spec["targetNamespace"]
    if spec.get("namePrefix"):
        out["namePrefix"] = spec["namePrefix"]
    if spec.get("nameSuffix"):
        out["nameSuffix"] = spec["nameSuffix"]
    patches = list(out.get("patches") or [])
    for patch in spec.get("patches") or []:
        item: dict[str, Any] = {"patch": patch.get("patch", "")}
        selector = _selector(patch.get("target"))
        if selector:
            item["target"] = selector
        patches.append(item)
    if patches:
        out["patches"] = patches
    images = list(out.get("images") or [])
    for image in spec.get("images") or []:
        new = {k: image[k] for k in ("name", "newName", "newTag", "digest") if image.get(k)}
        for i, existing in enumerate(images):
            if isinstance(existing, Mapping) and existing.get("name") == image.get("name"):
                images[i] = new
                break
        else:
            images.append(new)
    if images:
        out["images"] = images
    return out


def add_components(kus: dict[str, Any], directory: Path, components: list[str], ignore_missing: bool) -> None:
    wanted = list(kus.get("components") or [])
    for component in components:
        if ignore_missing and not (directory / component).exists():
            continue
        wanted.append(component)
    if wanted:
        kus["components"] = wanted


def write_kustomization(
    directory: Path, spec: Mapping[str, Any], generated: list[GeneratedResource] | None = None
) -> Path:
    """Generate (when absent: from `generated`, or the directory's files) or update the kustomization
    file with the Kustomization's overrides."""
    kfile = find_kustomization_file(directory)
    if kfile is None:
        resources = generated if generated is not None else generate_resources(directory)
        kus: dict[str, Any] = {
            "apiVersion": KUSTOMIZE_API_VERSION,
            "kind": "Kustomization",
            "resources": [r.path for r in resources],
        }
        kfile = directory / "kustomization.yaml"
    else:
        kus = load_kustomization_file(kfile)
    kus = merge_overrides(kus, spec)
    add_components(
        kus, directory, list(spec.get("components") or []), bool(spec.get("ignoreMissingComponents"))
    )
    text = yaml.dump(kus, Dumper=_Dumper, sort_keys=False, default_flow_style=False)
    replace_file(kfile, text.encode())
    return kfile


# kustomize's resource accumulation grows much faster than the object count (kustomize#5084; here,
# objects in one build: 500 in 0.4 s, 2,000 in 10 s, 10,000 in more than 10 minutes). A kustomization
# Tide generated from plain files, with nothing set that looks across objects (patches, images,
# name prefix or suffix, components: only targetNamespace, applied object by object), builds the same
# objects in groups of files, each by kustomize with the generated kustomization's own settings.
PARTITION_FROM = 1000
PARTITION_OBJECTS = 250
_ACROSS_OBJECTS = ("patches", "images", "namePrefix", "nameSuffix", "components")


def partitions(generated: list[GeneratedResource] | None, spec: Mapping[str, Any]) -> list[list[str]] | None:
    """The generated resources in groups of about PARTITION_OBJECTS objects, or None: build them in one."""
    if generated is None or any(spec.get(field) for field in _ACROSS_OBJECTS):
        return None
    if any(r.objects is None for r in generated) or sum(r.objects or 0 for r in generated) < PARTITION_FROM:
        return None
    groups: list[list[str]] = [[]]
    size = 0
    for resource_ in generated:
        if size >= PARTITION_OBJECTS:
            groups.append([])
            size = 0
        groups[-1].append(resource_.path)
        size += resource_.objects or 0
    return groups


def find_kustomize() -> str:
    explicit = os.environ.get("TIDE_KUSTOMIZE")
    if explicit:
        return explicit
    found = shutil.which("kustomize")
    if found:
        return found
    here = Path(__file__).resolve()
    for parent in here.parents:
        candidate = parent / ".tide" / "bin" / "kustomize"
        if candidate.exists():
            return str(candidate)
    raise KustomizeNotFound("kustomize binary not found: set TIDE_KUSTOMIZE or put kustomize on PATH")


def split_documents(output: str) -> list[Document]:
    docs: list[Document] = []
    for chunk in re.split(r"(?m)^---[ \t]*$\n?", output):
        if not chunk.strip():
            continue
        obj = yaml.load(chunk, Loader=_Loader)
        if obj is None:
            continue
        if not isinstance(obj, dict):
            raise BuildError("kustomize output contains a document that is not an object")
        docs.append(Document(obj=obj, text=chunk))
    return docs


def kustomize_env(home: Path, remote_bases: bool) -> dict[str, str]:
    """The child's whole environment: a home and config directory of its own (never the artifact: an
    artifact's .gitconfig would configure the git kustomize runs for remote bases), no system or
    global git config, only network protocols for git; without remote bases no git and no HTTP."""
    env = {
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "TMPDIR": str(home),  # remote clones land here and go with it
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_ALLOW_PROTOCOL": "https:http:ssh",
        "GOMAXPROCS": str(KUSTOMIZE_THREADS),
    }
    if remote_bases:
        env["PATH"] = os.environ.get("PATH", "/usr/bin:/bin")
        for name in (
            "HTTPS_PROXY",
            "HTTP_PROXY",
            "NO_PROXY",
            "https_proxy",
            "http_proxy",
            "no_proxy",
            "SSL_CERT_FILE",
            "SSL_CERT_DIR",
        ):
            if name in os.environ:
                env[name] = os.environ[name]
    else:
        # An empty PATH: no git (nor anything else) to run. Files named by URL inside generator configs
        # are fetched by kustomize itself over HTTP: send those to a proxy that does not exist.
        env["PATH"] = str(home / "bin")
        env["HTTPS_PROXY"] = env["HTTP_PROXY"] = "http://127.0.0.1:9"
    return env


# The limits are set by a shell that then becomes kustomize (exec), not by a preexec_fn: a
# preexec_fn makes Python fork the whole controller process for every build, where without one it
# spawns with vfork. At hundreds of builds a minute the fork was a seventh of the controller's CPU.
_LIMITED_EXEC = 'ulimit -t "$1" && ulimit -S -t "$2" && ulimit -d "$3" && shift 3 && exec "$@"'


def limited(command: list[str], memory: int, cpu_seconds: int) -> list[str]:
    """command run under RLIMIT_DATA `memory` bytes (0: none) and RLIMIT_CPU `cpu_seconds` (SIGXCPU;
    SIGKILL 5 s later). RLIMIT_DATA, not RLIMIT_AS: Go reserves address space in large, uneven steps
    (a 1200 MiB RLIMIT_AS fails at start where 1024 MiB works); the data limit counts memory in use."""
    data = str(max(1, memory >> 10)) if memory > 0 else "unlimited"
    return ["/bin/sh", "-c", _LIMITED_EXEC, "sh", str(cpu_seconds + 5), str(cpu_seconds), data, *command]


async def run_kustomize(
    root: Path,
    directory: Path,
    binary: str,
    limit: float,
    *,
    remote_bases: bool = True,
    memory_limit: int = DEFAULT_MEMORY_LIMIT,
) -> str:
    """`kustomize build` of directory, run from the artifact root with root-only load restrictions.
    No plugins, no helm, no exec: those need --enable-* flags that are never passed."""
    home = Path(tempfile.mkdtemp(prefix="tide-kustomize-home-"))
    target = str(directory.relative_to(root)) or "."
    try:
        command = [binary, "build", target, "--load-restrictor", "LoadRestrictionsRootOnly"]
        proc = await asyncio.create_subprocess_exec(
            *limited(command, memory_limit, KUSTOMIZE_THREADS * math.ceil(limit) + 1),
            cwd=root,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=kustomize_env(home, remote_bases),
        )
        try:
            stdout, stderr = await asyncio.wait_for(proc.communicate(), limit)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise BuildTimeout(f"kustomize build timed out after {limit:g}s") from None
        except asyncio.CancelledError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            raise
    finally:
        await asyncio.to_thread(shutil.rmtree, home, True)
    if proc.returncode != 0:
        raise _failure(proc.returncode or 0, stderr.decode(errors="replace"), root, memory_limit)
    return stdout.decode()


def _go_runtime_fault(stderr: str) -> bool:
    """The Go runtime crashed (a signal inside runtime code, with its goroutine dump): what kustomize
    does, now and then, instead of printing "out of memory", when an allocation meets RLIMIT_DATA
    (seen in the garbage collector's mark workers). kustomize's own errors never look like this."""
    head = stderr.lstrip()
    return head.startswith(("SIGSEGV:", "SIGBUS:", "unexpected signal")) and "\ngoroutine " in stderr


def _failure(returncode: int, stderr: str, root: Path, memory_limit: int) -> BuildError:
    if "out of memory" in stderr or "cannot allocate memory" in stderr or _go_runtime_fault(stderr):
        return BuildLimitExceeded(
            f"kustomize build exceeded its memory limit of {memory_limit >> 20} MiB and was stopped"
        )
    if returncode == -signal.SIGXCPU:
        return BuildLimitExceeded("kustomize build exceeded its CPU time limit and was stopped")
    if returncode == -signal.SIGKILL:
        return BuildLimitExceeded("kustomize build was killed (over its CPU time limit, or out of memory)")
    # Paths relative to the artifact root: the checkout's temporary name means nothing to the user.
    message = stderr.strip().removeprefix("Error: ").replace(f"{root}/", "").replace(str(root), ".")
    if "security; file" in message:
        return ReferenceRefused(
            f"kustomize build refused a file outside its kustomization directory: {message}"
        )
    return BuildError(f"kustomize build failed: {message}")


async def build(
    root: Path,
    spec: Mapping[str, Any],
    *,
    no_remote_bases: bool = False,
    limit: float = 300.0,
    memory_limit: int = DEFAULT_MEMORY_LIMIT,
    binary: str | None = None,
    before_build: Callable[[Path, Path], None] | None = None,
) -> list[Document]:
    """Build spec.path of an extracted artifact (the tree is modified in place: it is ours).
    before_build(root, directory) runs after the checks, before kustomize (SOPS generator sources)."""
    root, directory, generated = await asyncio.to_thread(_prepare, root, spec, no_remote_bases)
    if before_build is not None:
        await asyncio.to_thread(before_build, root, directory)
    binary = binary or find_kustomize()
    groups = partitions(generated, spec)
    if groups is not None:
        deadline = time.monotonic() + limit
        docs = await _build_partitioned(root, directory, groups, binary, deadline, memory_limit)
        if docs is not None:
            return docs
        limit = max(deadline - time.monotonic(), 1.0)
    output = await run_kustomize(
        root, directory, binary, limit, remote_bases=not no_remote_bases, memory_limit=memory_limit
    )
    return await asyncio.to_thread(split_documents, output)


async def _build_partitioned(
    root: Path, directory: Path, groups: list[list[str]], binary: str, deadline: float, memory_limit: int
) -> list[Document] | None:
    """Each group of files built by kustomize with the generated kustomization's settings, one after
    the other (the memory and CPU of one build, as without groups). None when a group fails or two
    groups hold the same object: the build in one then gives kustomize's own answer (its error, its
    message)."""
    parts = await asyncio.to_thread(_write_partitions, directory, groups)
    outputs = []
    try:
        for part in parts:
            remaining = max(deadline - time.monotonic(), 1.0)
            # Plain files only: nothing to fetch, whatever --no-remote-bases says.
            outputs.append(
                await run_kustomize(
                    root, part, binary, remaining, remote_bases=False, memory_limit=memory_limit
                )
            )
    except (BuildNotFinished, BuildLimitExceeded):
        raise
    except BuildError:
        return None
    finally:
        await asyncio.to_thread(_remove_partitions, parts)
    docs = await asyncio.to_thread(split_documents, "\n---\n".join(outputs))
    seen: set[tuple[str, str, str, str]] = set()
    for doc in docs:
        meta = doc.obj.get("metadata") or {}
        # kustomize's object identity: no namespace is the default namespace.
        key = (str(doc.obj.get("apiVersion")), str(doc.obj.get("kind")),
               str(meta.get("namespace") or "default"), str(meta.get("name") or ""))  # fmt: skip
        if key in seen:
            return None
        seen.add(key)
    return docs


_PARTITION_DIR = ".tide-partition-"


def _write_partitions(directory: Path, groups: list[list[str]]) -> list[Path]:
    """A directory per group beside the generated kustomization, holding links to the group's files
    (hard links: kustomize refuses symbolic ones leaving a kustomization's directory) and the
    generated kustomization with the group as its resources."""
    kus = load_kustomization_file(directory / "kustomization.yaml")
    parts = []
    for number, group in enumerate(groups):
        part = directory / f"{_PARTITION_DIR}{number:04d}"
        part.mkdir()
        names = []
        for index, path in enumerate(group):
            name = f"{index:04d}-{Path(path).name}"
            try:
                os.link(directory / path, part / name)
            except OSError:
                shutil.copyfile(directory / path, part / name)
            names.append(name)
        text = yaml.dump(
            {**kus, "resources": names}, Dumper=_Dumper, sort_keys=False, default_flow_style=False
        )
        (part / "kustomization.yaml").write_text(text)
        parts.append(part)
    return parts


def _remove_partitions(parts: list[Path]) -> None:
    for part in parts:
        shutil.rmtree(part, ignore_errors=True)


def _prepare(
    root: Path, spec: Mapping[str, Any], no_remote_bases: bool
) -> tuple[Path, Path, list[GeneratedResource] | None]:
    root = root.resolve()
    directory = resolve_path(root, spec.get("path"))
    check_symlinks(root)
    generated = None if find_kustomization_file(directory) else generate_resources(directory)
    write_kustomization(directory, spec, generated)
    check_references(root, directory, no_remote_bases)
    return root, directory, generated


def apply_common_metadata(objects: list[dict[str, Any]], common: Mapping[str, Any] | None) -> None:
    """spec.commonMetadata labels and annotations on every object (Flux applies these after the build)."""
    if not common:
        return
    labels = common.get("labels") or {}
    annotations = common.get("annotations") or {}
    for obj in objects:
        meta = obj.setdefault("metadata", {})
        if labels:
            meta["labels"] = {**(meta.get("labels") or {}), **labels}
        if annotations:
            meta["annotations"] = {**(meta.get("annotations") or {}), **annotations}
