"""Artifact storage: layout, digest checks and garbage collection by count and age."""

import os
import time
from pathlib import Path

import pytest

from tide.controllers.source.storage import Storage, advertised_address


def store(storage: Storage, name: str, content: bytes, age: float = 0) -> str:
    temp = storage.new_temp_file("GitRepository", "ns", "app")
    temp.write_bytes(content)
    rel = f"gitrepository/ns/app/{name}"
    storage.commit(temp, rel, "sha256:unused")
    if age:
        t = time.time() - age
        os.utime(storage.root / rel, (t, t))
    return rel


def names(storage: Storage) -> set[str]:
    return {p.name for p in (storage.root / "gitrepository/ns/app").iterdir()}


def test_keeps_current_and_newest_within_records(tmp_path: Path):
    s = Storage(tmp_path, "host:9090", retention_records=2, retention_ttl=3600)
    store(s, "a.tar.gz", b"a", age=30)
    store(s, "b.tar.gz", b"b", age=20)
    store(s, "c.tar.gz", b"c", age=10)
    current = store(s, "d.tar.gz", b"d")
    removed = s.garbage_collect("GitRepository", "ns", "app", current)
    assert sorted(removed) == ["gitrepository/ns/app/a.tar.gz", "gitrepository/ns/app/b.tar.gz"]
    assert names(s) == {"c.tar.gz", "d.tar.gz"}


def test_drops_expired_but_never_the_current(tmp_path: Path):
    s = Storage(tmp_path, "host:9090", retention_records=5, retention_ttl=60)
    store(s, "old.tar.gz", b"o", age=120)
    current = store(s, "cur.tar.gz", b"c", age=500)
    s.garbage_collect("GitRepository", "ns", "app", current)
    assert names(s) == {"cur.tar.gz"}


def test_verify_detects_missing_and_changed(tmp_path: Path):
    s = Storage(tmp_path, "host:9090")
    temp = s.new_temp_file("GitRepository", "ns", "app")
    temp.write_bytes(b"hello")
    rel = "gitrepository/ns/app/x.tar.gz"
    import hashlib

    digest = "sha256:" + hashlib.sha256(b"hello").hexdigest()
    s.commit(temp, rel, digest)
    assert s.verify(rel, digest)
    fresh = Storage(tmp_path, "host:9090")  # a restarted controller hashes again
    assert fresh.verify(rel, digest)
    (tmp_path / rel).write_bytes(b"tampered")
    assert not fresh.verify(rel, digest)
    (tmp_path / rel).unlink()
    assert not fresh.verify(rel, digest)


def test_paths_cannot_leave_storage(tmp_path: Path):
    s = Storage(tmp_path / "data", "host:9090")
    with pytest.raises(ValueError):
        s.local_path("../outside")
    assert s.url("gitrepository/ns/app/x.tar.gz") == "http://host:9090/gitrepository/ns/app/x.tar.gz"


def test_remove_all(tmp_path: Path):
    s = Storage(tmp_path, "host:9090")
    store(s, "a.tar.gz", b"a")
    s.remove_all("GitRepository", "ns", "app")
    assert not (tmp_path / "gitrepository/ns/app").exists()


def test_advertised_address_defaults_to_hostname():
    assert advertised_address(":9090", "").endswith(":9090")
    assert advertised_address(":9090", "source.svc:80") == "source.svc:80"
    assert advertised_address("127.0.0.1:9090", "") == "127.0.0.1:9090"
