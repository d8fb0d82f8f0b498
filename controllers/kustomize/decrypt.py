"""Decrypt: the SOPS step of the kustomize reconcile, natively (no sops binary).

The reconciler uses exactly these names:

    Keyring.from_secret_data(data: dict[str, bytes]) -> Keyring
        Keys from the Secret named by spec.decryption.secretRef (Kustomization's namespace):
        ``*.asc`` PGP private keys, ``*.agekey`` age identities, ``sops.vault-token``,
        ``sops.aws-kms``, ``sops.azure-kv``, ``sops.gcp-kms`` (recognised; their KMS cannot be
        reached from Tide, so documents that only those keys open fail with a clear message).
        ``Keyring()`` (no arguments) stands for "spec.decryption not set": an encrypted Secret
        then fails with Flux's "configuring decryption is required" message. With
        spec.decryption set, use ``from_secret_data`` even with no keys (``{}``), so the error
        names the keys the document needs.
        Optional: with no spec.decryption.secretRef, Flux falls back to the controller's
        --sops-age-secret: ``Keyring.from_age_secret_data(data)`` (only ``*.agekey`` entries);
        ``keyring.merged(other)`` combines two keyrings;
        ``keyring.close()`` removes the throw-away GnuPG home at once (else on garbage
        collection).
    decrypt_generator_sources(build_dir: Path, kustomization_dir: Path, keyring) -> None
        Before ``kustomize build``: decrypts in place the files secretGenerator ``files``/
        ``envs`` (and ``patches`` paths) refer to, following resources/components into
        sub-kustomizations; only inside build_dir; files over 5 MiB refused. Also verifies the
        MAC of every encrypted manifest it meets, so decrypt_resources can accept those objects
        after kustomize changed them (namespace, labels, key order): an object whose document
        was not verified so must still match its MAC as built.
    decrypt_resources(objects: list[dict], keyring) -> list[dict]
        After the build, as Flux: objects carrying sops metadata decrypted (their ``sops`` block
        dropped; any kind, as Flux; without decryption configured only an encrypted v1 Secret
        is an error), Secret data entries that are whole encrypted documents decrypted; objects
        annotated ``kustomize.toolkit.fluxcd.io/decrypt: Disabled`` left as they are.
    DecryptionError
        Every failure; the message names the file or object and the key ids it needed, says
        "MAC mismatch" on tampering, and never contains plaintext.

Both functions block (file I/O, gpg): call them with ``asyncio.to_thread``.
"""

from __future__ import annotations

import base64
import binascii
import os
from pathlib import Path
from typing import Any

import yaml

from tide.shared.artifact.fetch import replace_file

from .sops import (
    DecryptionError,
    Format,
    Keyring,
    decrypt_bytes,
    decrypt_mapping,
    detect_format,
    format_for_path,
    marker_for,
)
from .sops.formats import load
from .sops.metadata import metadata_from_mapping
from .sops.tree import decrypt_branches, mapping_from_branch

__all__ = ["DecryptionError", "Keyring", "decrypt_generator_sources", "decrypt_resources"]

MAX_ENCRYPTED_FILE_SIZE = 5 << 20
DECRYPT_ANNOTATION = "kustomize.toolkit.fluxcd.io/decrypt"
KUSTOMIZATION_FILE_NAMES = ("kustomization.yaml", "kustomization.yml", "Kustomization")


def _not_configured(what: str) -> DecryptionError:
    return DecryptionError(
        f"{what} is SOPS encrypted, configuring decryption is required for this secret to be reconciled"
    )


def _guarded(name: str, action: Any) -> Any:
    """Run a decryption; anything unexpected becomes a DecryptionError without its text."""
    try:
        return action()
    except DecryptionError:
        raise
    except Exception as exc:
        raise DecryptionError(f"{name}: decryption failed ({type(exc).__name__})") from None


# --- generator sources ----------------------------------------------------------------------


def decrypt_generator_sources(build_dir: Path, kustomization_dir: Path, keyring: Keyring) -> None:
    root = Path(os.path.realpath(build_dir))
    start = kustomization_dir if kustomization_dir.is_absolute() else root / kustomization_dir
    start = Path(os.path.realpath(start))
    if not _inside(root, start):
        raise DecryptionError(f"path '{kustomization_dir}' is outside the build directory")
    _SourceWalk(root, keyring).visit_dir(start)


def _inside(root: Path, path: Path) -> bool:
    return path == root or root in path.parents


def _is_remote(ref: str) -> bool:
    return "://" in ref or ref.startswith(("git@", "github.com/", "gitlab.com/", "bitbucket.org/"))


class _SourceWalk:
    def __init__(self, root: Path, keyring: Keyring) -> None:
        self.root = root
        self.keyring = keyring
        self.visited_dirs: set[Path] = set()
        self.done_files: set[Path] = set()

    def rel(self, path: Path) -> str:
        try:
            return str(path.relative_to(self.root))
        except ValueError:
            return path.name

    def resolve(self, base: Path, ref: str) -> Path | None:
        """The real path of a local reference, or None when it leaves the build directory."""
        if not ref or _is_remote(ref):
            return None
        target = Path(os.path.realpath(base / ref if not os.path.isabs(ref) else ref))
        return target if _inside(self.root, target) else None

    def visit_dir(self, directory: Path) -> None:
        if directory in self.visited_dirs or not directory.is_dir():
            return
        self.visited_dirs.add(directory)
        files = [directory / n for n in KUSTOMIZATION_FILE_NAMES if (directory / n).is_file()]
        if not files:
            # No kustomization file: the controller generates one from every manifest below.
            for path in sorted(directory.rglob("*")):
                if path.suffix in (".yaml", ".yml") and path.is_file():
                    real = self.resolve(directory, str(path))
                    if real is not None:
                        self.verify_resource_file(real)
            return
        try:
            kustomization = yaml.safe_load(files[0].read_bytes()) or {}
        except yaml.YAMLError:
            raise DecryptionError(f"cannot parse {self.rel(files[0])}") from None
        if not isinstance(kustomization, dict):
            return
        for generator in kustomization.get("secretGenerator") or []:
            if not isinstance(generator, dict):
                continue
            for source in generator.get("files") or []:
                key, _, source_path = str(source).partition("=")
                self.decrypt_source(directory, source_path or key, format_for_path(key))
            envs = list(generator.get("envs") or [])
            if generator.get("env"):
                envs.append(generator["env"])
            for env in envs:
                fmt = format_for_path(str(env))
                self.decrypt_source(directory, str(env), Format.DOTENV if fmt is Format.BINARY else fmt)
        for patch in kustomization.get("patches") or []:
            if isinstance(patch, dict) and patch.get("path"):
                self.decrypt_source(directory, str(patch["path"]), format_for_path(str(patch["path"])))
        refs = [*(kustomization.get("resources") or []), *(kustomization.get("components") or [])]
        refs += kustomization.get("bases") or []
        for ref in refs:
            target = self.resolve(directory, str(ref))
            if target is None:
                continue
            if target.is_dir():
                self.visit_dir(target)
            elif target.is_file() and target.suffix in (".yaml", ".yml", ".json"):
                self.verify_resource_file(target)

    def decrypt_source(self, directory: Path, ref: str, fmt: Format) -> None:
        target = self.resolve(directory, ref)
        if target is None or target in self.done_files:
            return
        try:
            info = target.lstat()
        except FileNotFoundError:
            return  # kustomize reports missing sources itself
        name = f"file '{self.rel(target)}'"
        if not target.is_file():
            raise DecryptionError(f"cannot decrypt {name}: not a regular file")
        if info.st_size > MAX_ENCRYPTED_FILE_SIZE:
            raise DecryptionError(
                f"cannot decrypt {name} with size ({info.st_size} bytes) exceeding limit "
                f"({MAX_ENCRYPTED_FILE_SIZE})"
            )
        data = target.read_bytes()
        if marker_for(fmt) not in data:
            return
        if not self.keyring.configured:
            raise _not_configured(name)
        plain = _guarded(name, lambda: decrypt_bytes(data, fmt, self.keyring, name=name))
        # a private checkout whose files may be hard links to the shared artifact: replace, never write in
        replace_file(target, plain, 0o600)
        self.done_files.add(target)

    def verify_resource_file(self, path: Path) -> None:
        """Check the MAC of an encrypted manifest as written in the source."""
        if path in self.done_files or not self.keyring.configured:
            return
        self.done_files.add(path)
        try:
            if path.stat().st_size > MAX_ENCRYPTED_FILE_SIZE:
                return
            data = path.read_bytes()
        except OSError:
            return
        fmt = Format.JSON if path.suffix == ".json" else Format.YAML
        if marker_for(fmt) not in data:
            return
        name = f"file '{self.rel(path)}'"
        try:
            branches, meta = load(data, fmt)
        except DecryptionError:
            return  # not a whole sops document (kustomize reports what it cannot parse)
        if all(_disabled(mapping_from_branch(b)) for b in branches):
            return
        _guarded(
            name, lambda: decrypt_branches(branches, meta, self.keyring.data_key(meta, name=name), name=name)
        )
        self.keyring.verified_macs.add(meta.mac)


# --- built resources ------------------------------------------------------------------------


def _is_sops_encrypted(obj: dict[str, Any]) -> bool:
    sops = obj.get("sops")
    return isinstance(sops, dict) and bool(sops.get("mac"))


def _disabled(obj: Any) -> bool:
    if not isinstance(obj, dict):
        return False
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    return str(annotations.get(DECRYPT_ANNOTATION, "")).lower() == "disabled"


def _describe(obj: dict[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    namespace = meta.get("namespace") or ""
    return f"{obj.get('kind')} '{namespace + '/' if namespace else ''}{meta.get('name', '')}'"


def decrypt_resources(objects: list[dict[str, Any]], keyring: Keyring) -> list[dict[str, Any]]:
    result = []
    for obj in objects:
        if _disabled(obj):
            result.append(obj)
        elif _is_sops_encrypted(obj):
            # as Flux: any kind carrying sops metadata is decrypted when decryption is configured;
            # without it, an encrypted v1 Secret is an error and other kinds pass through
            if keyring.configured or (obj.get("kind") == "Secret" and obj.get("apiVersion") == "v1"):
                result.append(_decrypt_object(obj, keyring))
            else:
                result.append(obj)
        elif obj.get("kind") == "Secret" and keyring.configured and isinstance(obj.get("data"), dict):
            result.append(_decrypt_data_entries(obj, keyring))
        else:
            result.append(obj)
    return result


def _decrypt_object(obj: dict[str, Any], keyring: Keyring) -> dict[str, Any]:
    name = _describe(obj)
    if not keyring.configured:
        raise _not_configured(name)

    def run() -> dict[str, Any]:
        stored_mac = metadata_from_mapping(obj.get("sops")).mac
        return decrypt_mapping(obj, keyring, name=name, mac_verified=stored_mac in keyring.verified_macs)

    decrypted: dict[str, Any] = _guarded(name, run)
    return decrypted


def _decrypt_data_entries(obj: dict[str, Any], keyring: Keyring) -> dict[str, Any]:
    data = dict(obj["data"])
    changed = False
    for key, value in data.items():
        try:
            raw = base64.b64decode(str(value), validate=True)
        except (binascii.Error, ValueError):
            continue  # kustomize/the API server will report a malformed entry
        fmt = detect_format(raw)
        if fmt is None:
            continue
        name = f"{_describe(obj)} field '{key}'"
        out_fmt = format_for_path(key)

        def run(raw: bytes = raw, fmt: Format = fmt, name: str = name, out_fmt: Format = out_fmt) -> bytes:
            plain: bytes = decrypt_bytes(raw, fmt, keyring, name=name, output=out_fmt)
            return plain

        data[key] = base64.b64encode(_guarded(name, run)).decode()
        changed = True
    return {**obj, "data": data} if changed else obj
