"""Helm sources: a 40 MiB generated index (400 charts x 100 versions, entries shaped as
`helm repo index` writes them: descriptions, maintainers, keywords, dependencies,
annotations) served over loopback HTTP.

In a fresh process: (a) the index fetch as the HelmRepository reconcile does it (streamed
to disk, hashed on the way); (b) a no-op reconcile's requests (the conditional GET);
(c) resolving a chart version from that index (the parse a build worker does once per
index revision) with its added peak resident memory; (d) the next HelmChart of the same
index revision (the parse reused).

Then Flux's 1000-HelmRelease scenario at N=100 (TIDE_BENCH_HELM_RELEASES; see bench/helm_releases.py).
"""

from __future__ import annotations

import asyncio
import json
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

CHARTS = 400
VERSIONS = 100
TARGET = 40 * 1024 * 1024


def generate_index(path: Path, target: int = TARGET) -> int:
    """A realistic index of about `target` bytes; returns its size."""
    rng = random.Random(7)
    per_entry = target // (CHARTS * VERSIONS)
    with path.open("w") as out:
        out.write("apiVersion: v1\nentries:\n")
        for c in range(CHARTS):
            name = f"chart-{c:04d}"
            out.write(f"  {name}:\n")
            for v in range(VERSIONS):
                version = f"{v // 20}.{v % 20}.{rng.randrange(10)}"
                entry = (
                    f"  - annotations:\n      artifacthub.io/changes: |\n        - kind: changed\n"
                    f"          description: Bump dependency {rng.getrandbits(64):016x}\n"
                    f"    apiVersion: v2\n    appVersion: {version}\n"
                    f'    created: "2024-0{1 + v % 9}-01T00:00:00.000000000Z"\n'
                    f"    dependencies:\n    - condition: redis.enabled\n      name: redis\n"
                    f"      repository: https://charts.example.com/common\n      version: 17.x.x\n"
                    f"    description: {name} deploys the {name} service with sensible defaults\n"
                    f"    digest: {rng.getrandbits(256):064x}\n"
                    f"    home: https://example.com/{name}\n    icon: https://example.com/{name}.png\n"
                    f"    keywords:\n    - {name}\n    - web\n    - example\n"
                    f"    maintainers:\n    - email: team@example.com\n      name: team\n"
                    f"    name: {name}\n    sources:\n    - https://github.com/example/{name}\n"
                    f"    type: application\n    urls:\n    - https://charts.example.com/{name}-{version}.tgz\n"
                    f"    version: {version}\n"
                )
                padding = per_entry - len(entry)
                if padding > 40:
                    entry = entry.replace(
                        "    apiVersion: v2\n",
                        f"    apiVersion: v2\n    x-notes: {'n' * (padding - 14)}\n",
                        1,
                    )
                out.write(entry)
        out.write('generated: "2024-01-01T00:00:00Z"\n')
    return path.stat().st_size


def _reset_peak() -> None:
    """Linux: VmHWM starts again from the current RSS (imports peaked higher than we start)."""
    Path("/proc/self/clear_refs").write_text("5")


def _status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


async def _child(served: Path, work: Path) -> dict[str, Any]:
    from aiohttp import web

    from tide.controllers.source import helm_http, helm_index
    from tide.shared.runtime.addr import Listener

    requests: list[int] = []

    async def count(request: web.Request, response: web.StreamResponse) -> None:
        requests.append(response.status)  # as sent: a file response turns 304 when it prepares

    app = web.Application()
    app.on_response_prepare.append(count)
    app.router.add_static("/", served)
    listener = Listener("127.0.0.1:0", app)
    await listener.start()
    try:
        url = f"http://127.0.0.1:{listener.port}/index.yaml"
        access = helm_http.RepositoryAccess(url)
        _reset_peak()
        baseline = _status("VmRSS")
        start = time.perf_counter()
        fetched = await helm_http.fetch(access, url, work / "index.yaml", 50 << 20, 60, "index")
        fetch_s = time.perf_counter() - start
        assert fetched is not None
        fetch_peak = _status("VmHWM") - baseline
        before = len(requests)
        again = await helm_http.fetch(
            access, url, work / "again.yaml", 50 << 20, 60, "index", fetched.validators
        )
        noop = requests[before:]

        _reset_peak()
        baseline = _status("VmRSS")
        start = time.perf_counter()
        chosen = helm_index.resolve_stored(
            work / "index.yaml", fetched.digest, "chart-0123", ">=2.0.0 <4.0.0"
        )
        resolve_s = time.perf_counter() - start
        resolve_peak = _status("VmHWM") - baseline
        retained = _status("VmRSS") - baseline
        start = time.perf_counter()
        helm_index.resolve_stored(work / "index.yaml", fetched.digest, "chart-0399", "*")
        cached_s = time.perf_counter() - start
    finally:
        await listener.stop()
    return {
        "size": fetched.size, "fetch_s": fetch_s, "fetch_peak": fetch_peak, "noop": noop,
        "noop_changed": again is not None, "resolve_s": resolve_s, "resolve_peak": resolve_peak,
        "retained": retained, "cached_s": cached_s, "chosen": chosen.version,
    }  # fmt: skip


def child(served: str, work: str) -> None:
    print(json.dumps(asyncio.run(_child(Path(served), Path(work)))))


def main() -> list[dict[str, str]]:
    from bench import helm_releases

    return index_rows() + asyncio.run(helm_releases.main())


def index_rows() -> list[dict[str, str]]:
    root = Path(tempfile.mkdtemp(prefix="tide-bench-helm-"))
    try:
        served, work = root / "served", root / "work"
        served.mkdir()
        work.mkdir()
        generate_index(served / "index.yaml")
        code = f"from bench.bench_helm import child; child({str(served)!r}, {str(work)!r})"
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=900, check=True
        ).stdout
        r = json.loads(out.strip().splitlines()[-1])
    finally:
        shutil.rmtree(root, ignore_errors=True)
    mib = 1024 * 1024
    size = r["size"] / mib
    return [
        {"benchmark": f"helm index fetch ({size:.0f} MiB, loopback HTTP)", "value": f"{r['fetch_s']:.2f}s",
         "note": f"streamed to disk: +{r['fetch_peak'] / mib:.1f} MiB peak RSS"},
        {"benchmark": "helm index no-op reconcile (requests)", "value": str(len(r["noop"])),
         "note": f"conditional GET answered {r['noop']}; nothing parsed or written"
                 + (" (server sent the index again)" if r["noop_changed"] else "")},
        {"benchmark": f"helm chart version from {size:.0f} MiB index (parse + resolve)",
         "value": f"{r['resolve_s']:.2f}s",
         "note": f"{CHARTS} charts x {VERSIONS} versions; got {r['chosen']}"},
        {"benchmark": "helm index parse: added peak RSS", "value": f"{r['resolve_peak'] / mib:.1f} MiB",
         "peer": f"target < {2 * size:.0f} MiB (2x index)",
         "note": f"{r['resolve_peak'] / r['size']:.2f}x the index; "
                 f"{r['retained'] / mib:.1f} MiB kept for reuse"},
        {"benchmark": "helm chart version, same index revision (parse reused)",
         "value": f"{r['cached_s'] * 1000:.2f}ms"},
    ]  # fmt: skip
