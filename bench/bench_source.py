"""Source controller figures against a real `git http-backend` on loopback (basic auth).

(a) no-op reconcile: the ref listing plus the up-to-date check, wall time and round trips;
(b) first fetch (shallow fetch + checkout) of a 10,000 file / 50 MB repo, beside
    `git clone --depth 1` of the same repo in the same run;
(c) building the deterministic artifact of that tree;
(d) the controller's event loop while 8 builds (fetch + checkout + archive) run at once, as in
    the MTTP scenario: loop lag and artifact download time with the builds in threads (the
    old way) beside the same builds in worker processes (BuildPool), same run;
(e) one build of that 400-file repo: artifact written from the fetched objects (no checkout
    on disk) beside checkout on disk + archive, same run.
"""

from __future__ import annotations

import asyncio
import random
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from e2e.fixtures.git import GitServer
from tide.controllers.source import builder, git, refs
from tide.controllers.source.builder import BuildPool
from tide.controllers.source.server import make_app
from tide.controllers.source.sourceignore import matcher_for_tree
from tide.controllers.source.storage import Storage
from tide.controllers.source.tarball import build_tarball
from tide.shared.api.source import GitRepositoryRef
from tide.shared.runtime.addr import Listener

FILES = 10_000
TOTAL_BYTES = 50 * 1024 * 1024


def populate(work: Path) -> None:
    """10,000 text files (YAML-ish lines of random hex) totalling 50 MB, in 100 directories."""
    rng = random.Random(42)
    per_file = TOTAL_BYTES // FILES
    for i in range(FILES):
        d = work / f"dir{i % 100:03d}"
        d.mkdir(exist_ok=True)
        lines, size = [], 0
        while size < per_file:
            line = f"key{size}: {rng.getrandbits(256):064x}\n"
            lines.append(line)
            size += len(line)
        (d / f"file{i:05d}.yaml").write_text("".join(lines)[:per_file])


def timed(fn, *args):  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    result = fn(*args)
    return time.perf_counter() - start, result


def main() -> list[dict[str, str]]:
    root = Path(tempfile.mkdtemp(prefix="tide-bench-source-"))
    server = GitServer(root / "server").start()
    try:
        return run(server, root)
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


def run(server: GitServer, root: Path) -> list[dict[str, str]]:
    rows: list[dict[str, str]] = []
    auth = git.GitAuth(username=server.user, password=server.password)

    # (a) no-op reconcile on a small repo
    small = server.create_repo("small", {"app.yaml": "a: 1\n"})
    ref = GitRepositoryRef(branch="main")
    samples, trips = [], []
    for _ in range(30):
        server.request_stats(reset=True)
        start = time.perf_counter()
        with git.Remote(small.http_url, auth, 30) as remote:
            listing = remote.ls_remote(refs.ref_prefixes(ref))
            target = refs.choose(ref, listing)
            _ = refs.revision(target, target.commit or "") == f"main@sha1:{small.head()}"
            trips.append(remote.round_trips)
        samples.append(time.perf_counter() - start)
    stats = server.request_stats()
    rows.append(
        {
            "benchmark": "source: no-op reconcile (remote unchanged, HTTP basic auth)",
            "value": f"{statistics.median(samples) * 1000:.1f} ms median, {max(trips)} round trip(s)",
            "note": f"ref listing only, no fetch; server saw {stats.get('total', 0)} request(s) "
            "for the last one",
        }
    )

    # (b) first fetch of 10k files / 50 MB vs git clone --depth 1
    big = server.create_repo("big", {"README.md": "big\n"}, sign=False)
    populate(big.work)
    big.git("add", "-A")
    big.git("commit", "-q", "-m", "10k files")
    big.push()
    url_with_creds = big.http_url.replace("http://", f"http://{server.user}:{server.password}@")
    git_times, our_times = [], []
    checkout = None
    for attempt in range(2):
        dest = root / f"git-clone-{attempt}"
        t, _ = timed(
            subprocess.run,
            ["git", "clone", "-q", "--depth", "1", "--branch", "main", url_with_creds, str(dest)],
        )
        git_times.append(t)
        ours = root / f"tide-clone-{attempt}"

        def fetch(dest: Path = ours) -> git.Checkout:
            with git.Remote(big.http_url, auth, 120) as remote:
                target = refs.choose(ref, remote.ls_remote(refs.ref_prefixes(ref)))
                return git.clone(remote, target, dest)

        t, checkout = timed(fetch)
        our_times.append(t)
    assert checkout is not None
    tree = root / "tide-clone-1"
    count = sum(1 for p in tree.rglob("*") if p.is_file())
    g, o = min(git_times), min(our_times)
    rows.append(
        {
            "benchmark": f"source: first fetch, {count} files / {TOTAL_BYTES // 2**20} MB "
            "(shallow fetch + checkout)",
            "value": f"{o:.2f} s ({o / g:.2f}x git)",
            "same_run": f"git clone --depth 1: {g:.2f} s",
            "note": "best of 2, same server and run; target <= 1.5x git",
        }
    )

    # (c) artifact build time for that tree
    storage = Storage(root / "storage", "localhost:9090")
    build_times = []
    archive = None
    for _ in range(2):
        temp = storage.new_temp_file("GitRepository", "bench", "big")
        start = time.perf_counter()
        matcher = matcher_for_tree(tree, None)
        archive = build_tarball(tree, temp, matcher.ignored)
        build_times.append(time.perf_counter() - start)
        temp.unlink()
    assert archive is not None
    rows.append(
        {
            "benchmark": "source: artifact build (deterministic tar.gz + sha256) of that tree",
            "value": f"{min(build_times):.2f} s",
            "note": f"{archive.files} files, {archive.content_size / 2**20:.0f} MB in, "
            f"{archive.size / 2**20:.1f} MB out",
        }
    )

    # (d) the event loop under concurrent builds: threads vs worker processes
    apps = {f"app-{i}/{kind}.yaml": f"kind: {kind}\nname: app-{i}\n" + "x: y\n" * 200
            for i in range(100) for kind in ("deployment", "service", "ingress", "sa")}  # fmt: skip
    mttp = server.create_repo("mttp", apps, sign=False)
    storage_root = root / "storage"
    served = storage_root / "artifact.tar.gz"
    served.write_bytes(random.Random(1).randbytes(256 * 1024))
    threads = asyncio.run(loop_under_builds(mttp.http_url, auth, root, storage_root, BuildPool(0)))
    procs = asyncio.run(loop_under_builds(mttp.http_url, auth, root, storage_root, BuildPool(BUILDS)))
    rows.append(
        {
            "benchmark": f"source: event loop during {BUILDS} concurrent builds x {ROUNDS} "
            "(400-file repo; worker processes vs threads)",
            "value": f"loop lag p99 {procs['lag_p99'] * 1000:.0f} ms "
            f"({threads['lag_p99'] / max(procs['lag_p99'], 1e-4):.1f}x lower), artifact GET median "
            f"{procs['get_median'] * 1000:.0f} ms "
            f"({threads['get_median'] / max(procs['get_median'], 1e-4):.1f}x faster)",
            "same_run": f"threads: lag p99 {threads['lag_p99'] * 1000:.0f} ms, max "
            f"{threads['lag_max'] * 1000:.0f} ms; GET median {threads['get_median'] * 1000:.0f} ms, "
            f"max {threads['get_max'] * 1000:.0f} ms",
            "note": f"processes: lag max {procs['lag_max'] * 1000:.0f} ms, GET max "
            f"{procs['get_max'] * 1000:.0f} ms; builds took {procs['builds']:.1f} s vs "
            f"{threads['builds']:.1f} s in threads; 256 KiB artifact, server on the same loop",
        }
    )

    # (e) one build: artifact from the fetched objects vs checkout on disk + archive
    with git.Remote(mttp.http_url, auth, 60) as remote:
        target = refs.choose(ref, remote.ls_remote(refs.ref_prefixes(ref)))
    direct_times, disk_times = [], []
    for _ in range(7):
        work = Path(tempfile.mkdtemp(prefix="tide-bench-build-", dir=root))
        start = time.perf_counter()
        builder.checkout(mttp.http_url, auth, 60.0, target, work / "tree", git.CheckoutOptions(),
                         builder.DirectArchive(None, work / "direct.tar.gz", 0))  # fmt: skip
        direct_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        builder.checkout(mttp.http_url, auth, 60.0, target, work / "tree", git.CheckoutOptions())
        builder.archive(work / "tree", [], None, work / "disk.tar.gz", 0)
        disk_times.append(time.perf_counter() - start)
        shutil.rmtree(work, ignore_errors=True)
    d, k = statistics.median(direct_times), statistics.median(disk_times)
    rows.append(
        {
            "benchmark": "source: one build of the 400-file repo (fetch + artifact)",
            "value": f"{d * 1000:.0f} ms ({k / d:.1f}x faster)",
            "same_run": f"checkout on disk + archive: {k * 1000:.0f} ms",
            "note": "median of 7, alternating, same run; artifact written from the fetched objects, "
            "byte-identical to the one from a checkout",
        }
    )
    return rows


BUILDS = 8
ROUNDS = 3


async def loop_under_builds(
    url: str, auth: git.GitAuth, root: Path, storage_root: Path, pool: BuildPool
) -> dict[str, float]:
    """Run BUILDS x ROUNDS builds through pool while probing the loop: 10 ms sleeps (lag is the
    overshoot) and artifact GETs from the artifact server on this same loop."""
    import aiohttp

    await pool.start()
    listener = Listener("127.0.0.1:0", make_app(storage_root))
    await listener.start()
    ref = GitRepositoryRef(branch="main")
    with git.Remote(url, auth, 60) as remote:
        target = refs.choose(ref, remote.ls_remote(refs.ref_prefixes(ref)))
    lags: list[float] = []
    gets: list[float] = []
    done = asyncio.Event()

    async def probe_lag() -> None:
        while not done.is_set():
            start = time.perf_counter()
            await asyncio.sleep(0.01)
            lags.append(time.perf_counter() - start - 0.01)

    async def probe_get(session: aiohttp.ClientSession) -> None:
        while not done.is_set():
            start = time.perf_counter()
            async with session.get(f"http://127.0.0.1:{listener.port}/artifact.tar.gz") as resp:
                await resp.read()
            gets.append(time.perf_counter() - start)
            await asyncio.sleep(0.05)

    async def build(i: int) -> None:
        work = Path(tempfile.mkdtemp(prefix="tide-bench-build-", dir=root))
        try:
            await pool.run(builder.checkout, url, auth, 60.0, target, work / "tree", git.CheckoutOptions())
            await pool.run(builder.archive, work / "tree", [], None, work / "out.tar.gz", 0)
        finally:
            await asyncio.to_thread(shutil.rmtree, work, True)

    if pool.workers:  # workers spawned and imported before timing, as in a running controller
        await asyncio.gather(*(pool.run(time.sleep, 0.2) for _ in range(pool.workers)))
    async with aiohttp.ClientSession() as session:
        probes = [asyncio.create_task(probe_lag()), asyncio.create_task(probe_get(session))]
        start = time.perf_counter()
        for _ in range(ROUNDS):
            await asyncio.gather(*(build(i) for i in range(BUILDS)))
        took = time.perf_counter() - start
        done.set()
        await asyncio.gather(*probes)
    await listener.stop()
    await pool.stop()
    lags.sort()
    return {
        "lag_p99": lags[int(len(lags) * 0.99)],
        "lag_max": lags[-1],
        "get_median": statistics.median(gets),
        "get_max": max(gets),
        "builds": took,
    }


if __name__ == "__main__":
    for row in main():
        print(row)
