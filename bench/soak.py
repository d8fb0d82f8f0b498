"""`make soak`: a long run that shows whether the controllers leak or fail under a steady load.

N Kustomizations (--kustomizations, default 1000), each one path of one GitRepository, at an interval
(--interval, default 1m), with a Git change every minute (--change-every) that touches every path, so
every Kustomization applies something new each minute. After all are Ready and a warm-up
(--warmup, default one interval), the run lasts --duration (default 30m) while the source and
kustomize controllers' resident memory (VmRSS) is sampled every --sample-every and their metrics are
scraped. The checks:

- memory: the median RSS of each controller's last minute is within --max-growth (10%) of the median
  of its first minute after warm-up (a leak grows; Python's RSS does not shrink back, so the peak is
  reported too);
- no reconcile errors (controller_runtime_reconcile_errors_total does not move) and every
  Kustomization Ready at the end;
- the last Git change applied everywhere within two intervals (nothing stuck behind).

Reported: p50/p99 reconcile latency per controller (from controller_runtime_reconcile_time_seconds),
reconciles and API requests per minute (tide_kube_api_requests_total, watches excluded), the memory
figures. A final table; exit status 1 when a check fails.

Starts its own control plane in a temp directory (--kubeconfig: an existing cluster, which must have
no other kustomize controller watching all namespaces: it would write the soak's statuses too).
`make soak SOAK_ARGS="--kustomizations 100 --duration 5m"` for a short run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.bench_kustomize import CRDS, Harness, kubectl, memory_kib, scrape
from e2e.cluster import ControlPlane
from e2e.fixtures.git import GitServer, Repo
from e2e.fixtures.kustomize import api_requests
from tide.shared.runtime.process import parse_duration_flag

NAMESPACE = "tide-soak"
BUCKET = re.compile(r'controller_runtime_reconcile_time_seconds_bucket\{controller="([^"]+)",le="([^"]+)"\}')


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="soak", description=__doc__.split("\n\n")[0] if __doc__ else "")
    parser.add_argument("--kustomizations", "-n", type=int, default=1000)
    parser.add_argument("--duration", type=parse_duration_flag, default=30 * 60.0)
    parser.add_argument("--interval", type=parse_duration_flag, default=60.0)
    parser.add_argument("--change-every", type=parse_duration_flag, default=60.0)
    parser.add_argument("--warmup", type=parse_duration_flag, default=None, help="default: one interval")
    parser.add_argument("--sample-every", type=parse_duration_flag, default=10.0)
    parser.add_argument("--max-growth", type=float, default=0.10, help="allowed RSS growth (fraction)")
    parser.add_argument("--converge-timeout", type=parse_duration_flag, default=20 * 60.0)
    parser.add_argument("--kubeconfig", default="", help="an existing cluster (default: a new control plane)")
    return parser.parse_args(argv)


def app_files(n: int, tick: int) -> dict[str, str]:
    """One ConfigMap per path; `tick` is the Git change it belongs to."""
    return {
        f"app-{i}/configmap.yaml": (
            f'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: app-{i}\ndata:\n  tick: "{tick}"\n'
        )
        for i in range(n)
    }


def manifests(n: int, url: str, interval: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = [
        {"apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository",
         "metadata": {"name": "apps", "namespace": NAMESPACE},
         "spec": {"url": url, "interval": interval, "ref": {"branch": "main"}}},
    ]  # fmt: skip
    for i in range(n):
        items.append(
            {"apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
             "metadata": {"name": f"app-{i}", "namespace": NAMESPACE},
             "spec": {"interval": interval, "path": f"./app-{i}", "prune": True, "timeout": "2m",
                      "targetNamespace": NAMESPACE, "sourceRef": {"kind": "GitRepository", "name": "apps"}}}
        )  # fmt: skip
    return items


def go_duration(seconds: float) -> str:
    return f"{int(seconds)}s" if seconds >= 1 else f"{int(seconds * 1000)}ms"


def quantile(buckets: list[tuple[float, float]], q: float) -> float | None:
    """q-quantile of a cumulative histogram [(le, count)], interpolated inside the bucket."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    lower_le, lower_count = 0.0, 0.0
    for le, count in buckets:
        if count >= rank:
            if le == float("inf"):
                return lower_le
            width = count - lower_count
            return lower_le + (le - lower_le) * ((rank - lower_count) / width if width else 1.0)
        lower_le, lower_count = le, count
    return lower_le


def latency_buckets(
    before: dict[str, float], after: dict[str, float]
) -> dict[str, list[tuple[float, float]]]:
    """Per controller, the reconcile-time histogram's cumulative bucket counts between two scrapes."""
    out: dict[str, list[tuple[float, float]]] = {}
    for key, value in after.items():
        match = BUCKET.fullmatch(key)
        if match:
            controller, le = match.groups()
            out.setdefault(controller, []).append((float(le), value - before.get(key, 0.0)))
    return {c: sorted(b) for c, b in out.items()}


def counter_sum(samples: dict[str, float], prefix: str) -> float:
    return sum(v for k, v in samples.items() if k.startswith(prefix))


@dataclass
class Sampled:
    rss: dict[str, list[tuple[float, int]]] = field(default_factory=dict)  # controller: [(t, KiB)]


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


async def ready_count(kube: Any, revision: str | None = None) -> tuple[int, list[str]]:
    """How many Kustomizations are Ready (at revision, if given), and the messages of failing ones."""
    listed = await kube.list("kustomize.toolkit.fluxcd.io/v1", "Kustomization", NAMESPACE)
    ready, failing = 0, []
    for k in listed:
        status = k.get("status") or {}
        cond = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), {})
        if cond.get("status") == "True" and (
            revision is None or status.get("lastAppliedRevision") == revision
        ):
            ready += 1
        elif cond.get("status") == "False":
            failing.append(f"{k['metadata']['name']}: {cond.get('message', '')[:160]}")
    return ready, failing


async def wait_all_ready(kube: Any, n: int, revision: str, limit: float) -> float:
    start = time.monotonic()
    while True:
        ready, _ = await ready_count(kube, revision)
        if ready == n:
            return time.monotonic() - start
        if time.monotonic() - start > limit:
            raise TimeoutError(f"{ready}/{n} Kustomizations Ready at {revision} after {limit:.0f} s")
        await asyncio.sleep(2)


def main_revision(repo: Repo) -> str:
    return f"main@sha1:{repo.head()}"


async def soak(
    args: argparse.Namespace, kubeconfig: Path, workdir: Path
) -> tuple[list[Check], list[list[str]]]:
    from tide.shared.kube import KubeClient

    n = args.kustomizations
    interval = go_duration(args.interval)
    warmup = args.interval if args.warmup is None else args.warmup
    kubectl(kubeconfig, "apply", "--server-side", "--force-conflicts", "-f", str(CRDS))
    kubectl(kubeconfig, "wait", "--for=condition=Established", "--timeout=60s", "crd", "--all")
    kubectl(kubeconfig, "delete", "namespace", NAMESPACE, "--ignore-not-found", "--wait=true")
    kubectl(kubeconfig, "create", "namespace", NAMESPACE)
    git = GitServer(workdir / "git").start()
    harness = Harness(kubeconfig, workdir)
    kube = await KubeClient.from_kubeconfig(str(kubeconfig))
    try:
        tick = 0
        repo = git.create_repo("soak", app_files(n, tick))
        source, kustomize = harness.start(NAMESPACE)
        procs = {"source": source, "kustomize": kustomize}
        print(f"soak: {n} Kustomizations, interval {interval}, change every {args.change_every:.0f} s, "
              f"duration {args.duration:.0f} s", file=sys.stderr, flush=True)  # fmt: skip
        items = manifests(n, repo.public_http_url, interval)
        kubectl(kubeconfig, "apply", "--server-side", "-f", "-",
                input=json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))  # fmt: skip
        converged = await wait_all_ready(kube, n, main_revision(repo), args.converge_timeout)
        print(f"soak: all Ready in {converged:.0f} s; warm-up {warmup:.0f} s", file=sys.stderr, flush=True)

        async def change() -> None:
            nonlocal tick
            tick += 1
            repo.commit(app_files(n, tick), f"tick {tick}")
            repo.push()

        next_change = time.monotonic()
        warm_until = time.monotonic() + warmup
        while time.monotonic() < warm_until:
            if time.monotonic() >= next_change:
                await change()
                next_change += args.change_every
            await asyncio.sleep(1)

        start = time.monotonic()
        first = {name: scrape(p.metrics_url) for name, p in procs.items()}
        sampled = Sampled()
        failing_seen: set[str] = set()
        next_sample = start
        end = start + args.duration
        while time.monotonic() < end:
            now = time.monotonic()
            if now >= next_change:
                await change()
                next_change += args.change_every
            if now >= next_sample:
                for name, p in procs.items():
                    if p.proc is None or p.proc.poll() is not None:
                        raise RuntimeError(f"{name} controller exited during the soak:\n{p.log()[-3000:]}")
                    sampled.rss.setdefault(name, []).append((now - start, memory_kib(p.proc.pid)))
                _, failing = await ready_count(kube)
                failing_seen.update(failing)
                next_sample += args.sample_every
                elapsed = now - start
                if int(elapsed) % 60 < args.sample_every:
                    rss = ", ".join(f"{k} {v[-1][1] / 1024:.0f} MiB" for k, v in sampled.rss.items())
                    print(f"soak: {elapsed:.0f}/{args.duration:.0f} s, tick {tick}, RSS {rss}, "
                          f"{len(failing)} not Ready", file=sys.stderr, flush=True)  # fmt: skip
            await asyncio.sleep(0.5)
        minutes = (time.monotonic() - start) / 60
        last = {name: scrape(p.metrics_url) for name, p in procs.items()}
        head = main_revision(repo)
        try:
            caught_up: float | None = await wait_all_ready(kube, n, head, 2 * args.interval + 60)
        except TimeoutError:
            caught_up = None
        _, failing = await ready_count(kube)
        failing_seen.update(failing)
    finally:
        with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
            kubectl(kubeconfig, "delete", "namespace", NAMESPACE, "--wait=true", "--timeout=280s")
        harness.stop()
        git.stop()
        await kube.close()

    checks: list[Check] = []
    rows: list[list[str]] = []
    for name in procs:
        series = sampled.rss.get(name, [])
        early = [kib for t, kib in series if t < 60] or [series[0][1]]
        late = [kib for t, kib in series if t >= series[-1][0] - 60] or [series[-1][1]]
        base, final = statistics.median(early), statistics.median(late)
        growth = final / base - 1 if base else 0.0
        peak = max(kib for _, kib in series)
        memory = f"{base / 1024:.0f} -> {final / 1024:.0f} MiB ({growth:+.1%}), peak {peak / 1024:.0f} MiB"
        checks.append(Check(f"{name}: RSS growth after warm-up <= {args.max_growth:.0%}",
                            growth <= args.max_growth, memory))  # fmt: skip
        errors = counter_sum(last[name], "controller_runtime_reconcile_errors_total") - counter_sum(
            first[name], "controller_runtime_reconcile_errors_total"
        )
        checks.append(Check(f"{name}: no reconcile errors", errors == 0, f"{int(errors)} errors"))
        requests = sum(api_requests(last[name]).values()) - sum(api_requests(first[name]).values())
        reconciles = counter_sum(last[name], "controller_runtime_reconcile_total") - counter_sum(
            first[name], "controller_runtime_reconcile_total"
        )
        for controller, buckets in sorted(latency_buckets(first[name], last[name]).items()):
            if not buckets or buckets[-1][1] <= 0:
                continue
            p50, p99 = quantile(buckets, 0.5), quantile(buckets, 0.99)
            rows.append(
                [f"{name}/{controller}", f"{int(buckets[-1][1])}", f"{p50 or 0:.3f} s", f"{p99 or 0:.3f} s"]
            )
        rows.append([f"{name} (all kinds)", f"{int(reconciles)} ({reconciles / minutes:.0f}/min)",
                     f"API {requests / minutes:.0f} req/min",
                     f"RSS {base / 1024:.0f}->{final / 1024:.0f} MiB"])  # fmt: skip
    checks.append(Check("every Kustomization Ready throughout", not failing_seen,
                        "; ".join(sorted(failing_seen)[:5]) or f"{n}/{n} Ready"))  # fmt: skip
    caught = f"in {caught_up:.0f} s ({tick} changes)" if caught_up is not None else f"not all at {head}"
    checks.append(Check("last Git change applied everywhere within two intervals", caught_up is not None,
                        caught))  # fmt: skip
    rows.insert(0, ["(setup) all Ready first", f"{converged:.0f} s", f"{n} Kustomizations",
                    f"{minutes:.1f} min measured"])  # fmt: skip
    return checks, rows


def print_report(checks: list[Check], rows: list[list[str]]) -> None:
    header = ["SCOPE", "RECONCILES", "P50 / API", "P99 / RSS"]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))
    print()
    width = max(len(c.name) for c in checks)
    for c in checks:
        print(f"{'PASS' if c.ok else 'FAIL'}  {c.name.ljust(width)}  {c.detail}")


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="tide-soak-"))
    plane: ControlPlane | None = None
    try:
        if args.kubeconfig:
            kubeconfig = Path(args.kubeconfig)
        else:
            plane = ControlPlane.private(workdir)
            kubeconfig = plane.kubeconfig
        os.environ["KUBECONFIG"] = str(kubeconfig)
        checks, rows = asyncio.run(soak(args, kubeconfig, workdir))
    finally:
        if plane is not None:
            plane.down()
        shutil.rmtree(workdir, ignore_errors=True)
    print_report(checks, rows)
    return 0 if all(c.ok for c in checks) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
