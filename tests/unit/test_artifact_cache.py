"""ArtifactCache: one download per digest, private hard-linked checkouts, writers never reach the
shared tree, eviction keeps checkouts alive."""

from __future__ import annotations

import asyncio
import hashlib
import io
import tarfile
from pathlib import Path

from aiohttp import web
from aiohttp.test_utils import TestServer

from tide.shared.api.meta import Artifact
from tide.shared.artifact.fetch import ArtifactCache, link_tree, replace_file
from tide.shared.kustomize.build import write_kustomization


def tarball(files: dict[str, str]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


class Artifacts:
    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}
        self.requests = 0

    def add(self, name: str, files: dict[str, str]) -> Artifact:
        self.blobs[name] = tarball(files)
        return Artifact(
            path=f"{name}.tar.gz",
            url=f"/{name}",
            revision="main@sha1:" + "0" * 40,
            digest="sha256:" + hashlib.sha256(self.blobs[name]).hexdigest(),
            last_update_time="2026-01-01T00:00:00Z",
        )

    async def handle(self, request: web.Request) -> web.Response:
        self.requests += 1
        await asyncio.sleep(0.05)  # concurrent checkouts overlap the download
        return web.Response(body=self.blobs[request.match_info["name"]])


async def serve(artifacts: Artifacts) -> TestServer:
    app = web.Application()
    app.router.add_get("/{name}", artifacts.handle)
    server = TestServer(app)
    await server.start_server()
    return server


def absolute(server: TestServer, artifact: Artifact) -> Artifact:
    return artifact.model_copy(update={"url": str(server.make_url(artifact.url))})


async def test_one_download_per_digest_and_private_checkouts(tmp_path: Path) -> None:
    artifacts = Artifacts()
    files = {
        "app/deployment.yaml": "kind: Deployment\n",
        "app/kustomization.yaml": "resources: [deployment.yaml]\n",
    }
    server = await serve(artifacts)
    cache = ArtifactCache(tmp_path / "cache")
    try:
        artifact = absolute(server, artifacts.add("a", files))
        copies = await asyncio.gather(*(cache.checkout(artifact) for _ in range(5)))
        assert artifacts.requests == 1
        assert len(set(copies)) == 5
        for copy in copies:
            assert (copy / "app" / "deployment.yaml").read_text() == "kind: Deployment\n"
        # The build rewrites kustomization.yaml in its copy; the others and the shared tree keep theirs.
        write_kustomization(copies[0] / "app", {"namePrefix": "x-"})
        assert "namePrefix" in (copies[0] / "app" / "kustomization.yaml").read_text()
        assert (copies[1] / "app" / "kustomization.yaml").read_text() == files["app/kustomization.yaml"]
        again = await cache.checkout(artifact)
        assert (again / "app" / "kustomization.yaml").read_text() == files["app/kustomization.yaml"]
        assert artifacts.requests == 1
    finally:
        await cache.stop()
        await server.close()


async def test_eviction_keeps_checked_out_copies(tmp_path: Path) -> None:
    artifacts = Artifacts()
    server = await serve(artifacts)
    cache = ArtifactCache(tmp_path / "cache", keep=1)
    try:
        first = await cache.checkout(absolute(server, artifacts.add("a", {"a.yaml": "a\n"})))
        await cache.checkout(absolute(server, artifacts.add("b", {"b.yaml": "b\n"})))
        assert (first / "a.yaml").read_text() == "a\n"
        assert len([p for p in (tmp_path / "cache").iterdir() if p.name.startswith("tree-")]) == 1
        await cache.checkout(absolute(server, artifacts.add("a", {"a.yaml": "a\n"})))
        assert artifacts.requests == 3
    finally:
        await cache.stop()
        await server.close()


async def test_a_borrowed_tree_is_the_cached_one_and_is_not_evicted_while_borrowed(tmp_path: Path) -> None:
    artifacts = Artifacts()
    server = await serve(artifacts)
    cache = ArtifactCache(tmp_path / "cache", keep=1)
    try:
        a = absolute(server, artifacts.add("a", {"Chart.yaml": "name: a\n"}))
        async with cache.borrow(a) as first, cache.borrow(a) as second:
            assert first == second  # no copy: the tree itself
            # Another artifact pushes past keep=1, but a borrowed tree stays.
            await cache.checkout(absolute(server, artifacts.add("b", {"b.yaml": "b\n"})))
            assert (first / "Chart.yaml").read_text() == "name: a\n"
        async with cache.borrow(a) as again:
            assert again == first
        assert artifacts.requests == 2
    finally:
        await cache.stop()
        await server.close()


async def test_without_a_cache_a_borrowed_tree_is_a_download_removed_after(tmp_path: Path) -> None:
    artifacts = Artifacts()
    server = await serve(artifacts)
    cache = ArtifactCache(tmp_path / "cache", keep=0)
    try:
        async with cache.borrow(absolute(server, artifacts.add("a", {"a.yaml": "a\n"}))) as tree:
            assert (tree / "a.yaml").read_text() == "a\n"
        assert not tree.exists()
    finally:
        await cache.stop()
        await server.close()


async def test_disabled_or_odd_digest_downloads_every_time(tmp_path: Path) -> None:
    artifacts = Artifacts()
    server = await serve(artifacts)
    cache = ArtifactCache(tmp_path / "cache", keep=0)
    try:
        artifact = absolute(server, artifacts.add("a", {"a.yaml": "a\n"}))
        await cache.checkout(artifact)
        await cache.checkout(artifact)
        assert artifacts.requests == 2
    finally:
        await cache.stop()
        await server.close()


def test_link_tree_keeps_symlinks_and_replace_file_breaks_the_link(tmp_path: Path) -> None:
    src, dest = tmp_path / "src", tmp_path / "dest"
    (src / "dir").mkdir(parents=True)
    (src / "dir" / "file.yaml").write_text("original\n")
    (src / "link.yaml").symlink_to("dir/file.yaml")
    dest.mkdir()
    link_tree(src, dest)
    assert (dest / "link.yaml").is_symlink() and (dest / "link.yaml").read_text() == "original\n"
    assert (dest / "dir" / "file.yaml").stat().st_ino == (src / "dir" / "file.yaml").stat().st_ino
    replace_file(dest / "dir" / "file.yaml", b"secret\n", 0o600)
    assert (src / "dir" / "file.yaml").read_text() == "original\n"
    assert (dest / "dir" / "file.yaml").read_text() == "secret\n"
    assert (dest / "dir" / "file.yaml").stat().st_mode & 0o777 == 0o600


async def test_without_coreutils_python_links_and_removes(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from tide.shared.artifact import fetch

    async def no_coreutils(*argv: str) -> bool:
        return False

    monkeypatch.setattr(fetch, "_run", no_coreutils)
    artifacts = Artifacts()
    server = await serve(artifacts)
    cache = ArtifactCache(tmp_path / "cache")
    try:
        copy = await cache.checkout(absolute(server, artifacts.add("a", {"dir/a.yaml": "a\n"})))
        assert (copy / "dir" / "a.yaml").read_text() == "a\n"
        await fetch.remove_tree(copy)
        assert not copy.exists()
    finally:
        await cache.stop()
        await server.close()


async def test_a_tree_being_copied_is_not_evicted(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from tide.shared.artifact import fetch

    async def slow_copy(*argv: str) -> bool:
        await asyncio.sleep(0.2 if argv[0] == "cp" else 0)
        return False  # then the Python fallback copies from the tree

    monkeypatch.setattr(fetch, "_run", slow_copy)
    artifacts = Artifacts()
    server = await serve(artifacts)
    cache = ArtifactCache(tmp_path / "cache", keep=1)
    try:
        a = absolute(server, artifacts.add("a", {"a.yaml": "a\n"}))
        b = absolute(server, artifacts.add("b", {"b.yaml": "b\n"}))
        copy_a, copy_b = await asyncio.gather(cache.checkout(a), cache.checkout(b))
        assert (copy_a / "a.yaml").read_text() == "a\n"
        assert (copy_b / "b.yaml").read_text() == "b\n"
        assert len([p for p in (tmp_path / "cache").iterdir() if p.name.startswith("tree-")]) == 1
    finally:
        await cache.stop()
        await server.close()


async def test_eviction_skips_a_tree_taken_up_while_another_is_removed(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from tide.shared.artifact import fetch

    async def slow_tools(*argv: str) -> bool:
        await asyncio.sleep(0.1 if argv[0] == "cp" else 0.05)
        return False  # then the Python fallbacks do the work

    artifacts = Artifacts()
    server = await serve(artifacts)
    cache = ArtifactCache(tmp_path / "cache", keep=3)
    try:
        a, b, c = (absolute(server, artifacts.add(n, {f"{n}.yaml": f"{n}\n"})) for n in "abc")
        for artifact in (a, b, c):
            await cache.checkout(artifact)
        monkeypatch.setattr(fetch, "_run", slow_tools)
        cache.keep = 1
        # The eviction removes a (slowly); meanwhile b is checked out: b must not be evicted under it.
        _, copy_b = await asyncio.gather(cache._evict(), cache.checkout(b))
        assert (copy_b / "b.yaml").read_text() == "b\n"
        assert len([p for p in (tmp_path / "cache").iterdir() if p.name.startswith("tree-")]) == 1
        assert artifacts.requests == 3
    finally:
        await cache.stop()
        await server.close()


def test_artifact_of_a_source_is_the_model_or_none() -> None:
    from tide.shared.artifact.fetch import artifact_of

    artifact = {
        "path": "gitrepository/ns/app/x.tar.gz",
        "url": "http://source/x.tar.gz",
        "revision": "main@sha1:" + "a" * 40,
        "digest": "sha256:" + "b" * 64,
        "lastUpdateTime": "2026-01-01T00:00:00Z",
    }
    found = artifact_of({"status": {"artifact": artifact}})
    assert found is not None and found.revision == artifact["revision"] and found.url == artifact["url"]
    assert artifact_of(None) is None
    assert artifact_of({"status": {}}) is None
    assert artifact_of({"status": {"artifact": {**artifact, "url": ""}}}) is None
    assert artifact_of({"status": {"artifact": {**artifact, "digest": "not a digest"}}}) is None
