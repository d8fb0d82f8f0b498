"""Artifact storage: `<storage-path>/<kind>/<namespace>/<name>/<file>`, served over HTTP.

Files are written to a temp name and renamed into place, so a reader never sees half an
artifact. Digests of stored files are checked once per process (then cached by size and
mtime), so a missing or altered artifact is rebuilt after a restart.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import time
from pathlib import Path

from tide.shared.artifact.client import file_digest


class Storage:
    def __init__(
        self,
        root: Path,
        advertised_address: str,
        retention_records: int = 2,
        retention_ttl: float = 60.0,
    ) -> None:
        self.root = root
        self.advertised_address = advertised_address
        self.retention_records = retention_records
        self.retention_ttl = retention_ttl
        self._digests: dict[str, tuple[int, int, str]] = {}
        root.mkdir(parents=True, exist_ok=True)

    @staticmethod
    def object_dir(kind: str, namespace: str, name: str) -> str:
        return f"{kind.lower()}/{namespace}/{name}"

    def local_path(self, rel: str) -> Path:
        path = (self.root / rel).resolve()
        if not str(path).startswith(str(self.root.resolve()) + os.sep):
            raise ValueError(f"artifact path outside storage: {rel}")
        return path

    def url(self, rel: str) -> str:
        return f"http://{self.advertised_address}/{rel}"

    def new_temp_file(self, kind: str, namespace: str, name: str) -> Path:
        directory = self.root / self.object_dir(kind, namespace, name)
        directory.mkdir(parents=True, exist_ok=True)
        fd, path = tempfile.mkstemp(prefix=".tmp-", suffix=".tar.gz", dir=directory)
        os.close(fd)
        return Path(path)

    def commit(self, temp_file: Path, rel: str, digest: str) -> None:
        """Move a finished temp file into place and remember its digest."""
        target = self.local_path(rel)
        os.chmod(temp_file, 0o644)
        os.replace(temp_file, target)
        st = target.stat()
        self._digests[rel] = (st.st_size, st.st_mtime_ns, digest)

    def symlink(self, rel: str, name: str) -> str:
        """Point `<name>` next to the artifact at it (Flux's `latest.tar.gz`); returns its URL."""
        self.local_path(rel)
        link_rel = f"{rel.rsplit('/', 1)[0]}/{name}"
        link = self.root / link_rel
        temp = link.with_name(f".tmp-link-{os.getpid()}-{name}")
        temp.unlink(missing_ok=True)
        os.symlink(rel.rsplit("/", 1)[-1], temp)
        os.replace(temp, link)
        return self.url(link_rel)

    def verify(self, rel: str, digest: str | None) -> bool:
        """True when the file exists and hashes to digest (hashing at most once per change)."""
        try:
            path = self.local_path(rel)
            st = path.stat()
        except (OSError, ValueError):
            return False
        cached = self._digests.get(rel)
        if cached and cached[0] == st.st_size and cached[1] == st.st_mtime_ns:
            actual = cached[2]
        else:
            actual = "sha256:" + file_digest(path)
            self._digests[rel] = (st.st_size, st.st_mtime_ns, actual)
        return digest is None or actual == digest

    def garbage_collect(self, kind: str, namespace: str, name: str, current: str | None) -> list[str]:
        """Keep the current artifact; drop others beyond the newest `retention_records`
        (current included) or older than `retention_ttl`. Returns removed paths."""
        directory = self.root / self.object_dir(kind, namespace, name)
        if not directory.is_dir():
            return []
        now = time.time()
        files = []
        for entry in os.scandir(directory):
            if not entry.is_file(follow_symlinks=False) or entry.name.endswith(".lock"):
                continue
            rel = f"{self.object_dir(kind, namespace, name)}/{entry.name}"
            if rel == current:
                continue
            mtime = entry.stat().st_mtime
            if entry.name.startswith(".tmp-") and now - mtime < 3600:
                continue  # a build in progress
            files.append((mtime, rel))
        files.sort(reverse=True)
        keep = max(self.retention_records - (1 if current else 0), 0)
        removed = []
        for index, (mtime, rel) in enumerate(files):
            if index >= keep or now - mtime > self.retention_ttl:
                try:
                    (self.root / rel).unlink()
                    self._digests.pop(rel, None)
                    removed.append(rel)
                except FileNotFoundError:
                    pass
        return removed

    def remove_all(self, kind: str, namespace: str, name: str) -> None:
        directory = self.root / self.object_dir(kind, namespace, name)
        shutil.rmtree(directory, ignore_errors=True)
        prefix = self.object_dir(kind, namespace, name) + "/"
        for rel in [r for r in self._digests if r.startswith(prefix)]:
            del self._digests[rel]


def advertised_address(storage_addr: str, adv_addr: str | None) -> str:
    """Flux's default: the listen address with the host replaced by the hostname if unset."""
    if adv_addr:
        return adv_addr
    host, _, port = storage_addr.rpartition(":")
    if host in ("", "0.0.0.0", "[::]", "::"):
        host = socket.gethostname()
    return f"{host}:{port}"
