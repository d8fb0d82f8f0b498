"""An OCI layer to an artifact (in a build worker): untar it the way Flux does (symlinks
skipped, no path may leave the tree), then apply `.sourceignore`/`spec.ignore` and write the
deterministic tar.gz like a Git checkout's."""

from __future__ import annotations

import os
import shutil
import stat
import tarfile
from pathlib import Path, PurePosixPath

from tide.controllers.source.builder import archive
from tide.controllers.source.tarball import Archive, check_size
from tide.shared.artifact import ArtifactError
from tide.shared.artifact.extract import check_entries, check_member_name, open_tar


class LayerExtractError(Exception):
    pass


def untar_layer(blob: Path, dest: Path, max_size: int, max_entries: int) -> int:
    """Extract the (gzip) tar blob into dest; returns the number of files written.
    max_entries caps the tar's entries, links included (0: no limit)."""
    dest.mkdir(parents=True, exist_ok=True)
    real_dest = os.path.realpath(dest)
    total = files = entries = 0
    try:
        with open_tar(blob) as tar:
            for member in tar:
                entries += 1
                check_entries(entries, max_entries)
                rel = check_member_name(member.name)
                if rel == PurePosixPath(".") or member.issym() or member.islnk():
                    continue  # Flux's untar for OCI layers skips links
                target = dest / rel
                if not os.path.realpath(target.parent).startswith(real_dest):
                    raise ArtifactError(f"illegal path in artifact: {rel}")
                if member.isdir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                if not member.isreg():
                    raise ArtifactError(f"tar file entry {rel} contained unsupported file type")
                total += member.size
                check_size(total, max_size)
                target.parent.mkdir(parents=True, exist_ok=True)
                if target.is_symlink() or target.is_dir():
                    raise ArtifactError(f"illegal path in artifact: {rel}")
                source = tar.extractfile(member)
                if source is None:
                    raise ArtifactError(f"unreadable entry in artifact: {rel}")
                mode = 0o755 if member.mode & stat.S_IXUSR else 0o644
                fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
                with os.fdopen(fd, "wb") as out, source:
                    shutil.copyfileobj(source, out, 1 << 20)
                files += 1
    except ArtifactError as exc:
        shutil.rmtree(dest, ignore_errors=True)
        raise LayerExtractError(f"failed to extract layer contents from artifact: {exc}") from exc
    except (tarfile.TarError, EOFError, OSError) as exc:
        shutil.rmtree(dest, ignore_errors=True)
        raise LayerExtractError(f"failed to extract layer contents from artifact: {exc}") from exc
    return files


def extract_and_archive(
    blob: Path, tree: Path, ignore: str | None, out_file: Path, max_size: int, max_entries: int
) -> Archive:
    untar_layer(blob, tree, max_size, max_entries)
    return archive(tree, [], ignore, out_file, max_size)
