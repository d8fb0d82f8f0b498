"""Build a Kustomization's path with the real `kustomize`, as Flux does.

Steps: resolve `spec.path` inside the artifact root; refuse symlinks and file references that leave the
root (CVE-2022-24877) and, with `--no-remote-bases`, remote resources; generate a kustomization.yaml
when the path has none; merge the Kustomization's overrides into it; run `kustomize build` with no
plugins; split the output into documents (text kept: substitution works on kustomize's own text).
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tide.shared.artifact.fetch import replace_file

KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
KUSTOMIZE_API_VERSION = "kustomize.config.k8s.io/v1beta1"
_REMOTE = re.compile(r"^(https?://|git::|ssh://|git@|github\.com/|gitlab\.com/|bitbucket\.org/)")

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


def resolve_path(root: Path, path: str | None) -> Path:
    """spec.path relative to the artifact root; `..` or a symlink leading out is refused."""
    root = root.resolve()
    rel = (path or "./").lstrip("/")
    target = (root / rel).resolve()
    if not _inside(root, target):
        raise BuildError(f"path '{path}' is outside the source artifact root")
    if not target.is_dir():
        raise BuildError(f"kustomization path not found: '{path}' is not a directory in the artifact")
    return target


def check_symlinks(root: Path) -> None:
    """Every symlink in the artifact must point inside it."""
    root = root.resolve()
    pending = [str(root)]
    while pending:
        # scandir's entry types come with the listing: no stat per file (this runs on every build)
        with os.scandir(pending.pop()) as entries:
            for entry in entries:
                if entry.is_symlink():
                    p = Path(entry.path)
                    if not _inside(root, p.resolve()):
                        raise BuildError(
                            f"symlink '{p.relative_to(root)}' points outside the source artifact root"
                        )
                elif entry.is_dir():
                    pending.append(entry.path)


def _is_remote(entry: str) -> bool:
    return bool(_REMOTE.match(entry))


def _path_entries(kus: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """(field, entry) for every file or directory a kustomization file names."""
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
        for entry in kus.get(field) or []:
            if isinstance(entry, str) and "\n" not in entry:
                yield field, entry
    for entry in kus.get("patchesStrategicMerge") or []:
        if isinstance(entry, str) and "\n" not in entry and ":" not in entry:
            yield "patchesStrategicMerge", entry
    for field in ("patches", "patchesJson6902", "replacements"):
        for entry in kus.get(field) or []:
            if isinstance(entry, Mapping) and isinstance(entry.get("path"), str):
                yield field, entry["path"]
    for field in ("configMapGenerator", "secretGenerator"):
        for gen in kus.get(field) or []:
            if not isinstance(gen, Mapping):
                continue
            for f in gen.get("files") or []:
                if isinstance(f, str):
                    yield field, f.split("=", 1)[1] if "=" in f else f
            for f in list(gen.get("envs") or []) + ([gen["env"]] if isinstance(gen.get("env"), str) else []):
                if isinstance(f, str):
                    yield field, f
    openapi = kus.get("openapi")
    if isinstance(openapi, Mapping) and isinstance(openapi.get("path"), str):
        yield "openapi", openapi["path"]
    globals_ = kus.get("helmGlobals")
    if isinstance(globals_, Mapping) and isinstance(globals_.get("chartHome"), str):
        yield "helmGlobals", globals_["chartHome"]


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
    """Walk every kustomization reachable from directory; each local reference must stay inside root."""
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
        for field, entry in _path_entries(kus):
            if os.path.isabs(entry):
                raise BuildError(f"{field} '{entry}' in {_rel(root, kfile)}: absolute paths are not allowed")
            target = (current / entry).resolve()
            if target.exists() or not _is_remote(entry):
                if not _inside(root, target):
                    raise BuildError(
                        f"{field} '{entry}' in {_rel(root, kfile)} is outside the source artifact root"
                    )
                if target.is_dir():
                    pending.append(target)
            elif no_remote_bases:
                raise BuildError(
                    f"{field} '{entry}' in {_rel(root, kfile)} is a remote resource and remote bases "
                    "are disabled (--no-remote-bases)"
                )


def _rel(root: Path, p: Path) -> str:
    try:
        return str(p.relative_to(root))
    except ValueError:
        return str(p)


def _is_kubernetes_yaml(path: Path) -> bool:
    try:
        docs = [d for d in yaml.load_all(path.read_text(), Loader=_Loader) if d is not None]
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise BuildError(f"failed to decode Kubernetes YAML from {path.name}: {exc}") from exc
    for doc in docs:
        if not isinstance(doc, dict) or "apiVersion" not in doc or "kind" not in doc:
            raise BuildError(f"failed to decode Kubernetes YAML from {path.name}: missing apiVersion or kind")
    return True


def generate_resources(directory: Path) -> list[str]:
    """Flux's generated resources: every .yaml/.yml under directory, and every subdirectory that has its
    own kustomization file (not descended into), in walk order."""
    resources: list[str] = []

    def walk(current: Path) -> None:
        for entry in sorted(current.iterdir(), key=lambda p: p.name):
            if entry.is_dir():
                if find_kustomization_file(entry):
                    resources.append(str(entry.relative_to(directory)))
                else:
                    walk(entry)
            elif entry.suffix in (".yaml", ".yml") and _is_kubernetes_yaml(entry):
                resources.append(str(entry.relative_to(directory)))

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


def write_kustomization(directory: Path, spec: Mapping[str, Any]) -> Path:
    """Generate (when absent) or update the kustomization file with the Kustomization's overrides."""
    kfile = find_kustomization_file(directory)
    if kfile is None:
        kus: dict[str, Any] = {
            "apiVersion": KUSTOMIZE_API_VERSION,
            "kind": "Kustomization",
            "resources": generate_resources(directory),
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
    raise BuildNotFinished("kustomize binary not found: set TIDE_KUSTOMIZE or put kustomize on PATH")


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


async def run_kustomize(directory: Path, binary: str, limit: float) -> str:
    # No plugins, no helm, no exec: those need --enable-* flags that are never passed.
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(directory),
        "XDG_CONFIG_HOME": str(directory),
    }
    proc = await asyncio.create_subprocess_exec(
        binary,
        "build",
        str(directory),
        "--load-restrictor",
        "LoadRestrictionsNone",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    try:
        stdout, stderr = await asyncio.wait_for(proc.communicate(), limit)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise BuildNotFinished(f"kustomize build timed out after {limit:g}s") from None
    if proc.returncode != 0:
        message = stderr.decode(errors="replace").strip().removeprefix("Error: ")
        raise BuildError(f"kustomize build failed: {message}")
    return stdout.decode()


async def build(
    root: Path,
    spec: Mapping[str, Any],
    *,
    no_remote_bases: bool = False,
    limit: float = 300.0,
    binary: str | None = None,
    before_build: Callable[[Path, Path], None] | None = None,
) -> list[Document]:
    """Build spec.path of an extracted artifact (the tree is modified in place: it is ours).
    before_build(root, directory) runs after the checks, before kustomize (SOPS generator sources)."""
    root, directory = await asyncio.to_thread(_prepare, root, spec, no_remote_bases)
    if before_build is not None:
        await asyncio.to_thread(before_build, root, directory)
    output = await run_kustomize(directory, binary or find_kustomize(), limit)
    return await asyncio.to_thread(split_documents, output)


def _prepare(root: Path, spec: Mapping[str, Any], no_remote_bases: bool) -> tuple[Path, Path]:
    root = root.resolve()
    directory = resolve_path(root, spec.get("path"))
    check_symlinks(root)
    write_kustomization(directory, spec)
    check_references(root, directory, no_remote_bases)
    return root, directory


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
