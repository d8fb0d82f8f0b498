"""Notification figures.

(a) webhook to applied: a signed GitHub push POSTed to a Receiver until the new revision is applied
    in the cluster (Kustomization status.lastAppliedRevision) for a 20-object Kustomization, with
    the real source, kustomize and notification controller processes and a real Git server;
    intervals are 1h so only the webhook can bring the revision in. Median of 10. Also the POST
    itself (validate + requestedAt merge patches) and POST -> GitRepository artifact.
(b) events in: Flux events POSTed to the event server until a generic provider (a loopback HTTP
    server) has received them all, in-process with a stubbed Alert list.

Uses TIDE_E2E_KUBECONFIG when set, else starts its own control plane in a temp directory.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from e2e.cluster import BIN, ControlPlane, free_port
from e2e.fixtures.controllers import ControllerProcess
from e2e.fixtures.git import GitServer

ROOT = Path(__file__).resolve().parent.parent
CRDS = ROOT / "charts" / "tide" / "crds"
OBJECTS = 20
RUNS = 10
TOKEN = "bench-token"
NAMESPACE = f"bench-notification-{uuid.uuid4().hex[:6]}"


def kubectl(kubeconfig: Path, *args: str, input: str | None = None) -> str:
    result = subprocess.run(
        [str(BIN / "kubectl"), f"--kubeconfig={kubeconfig}", *args],
        input=input, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    if result.returncode != 0:
        raise RuntimeError(f"kubectl {' '.join(args)}: {result.stderr}")
    return result.stdout


def configmaps(revision: int) -> dict[str, str]:
    files = {}
    names = []
    for i in range(OBJECTS):
        name = f"cm-{i:02d}.yaml"
        names.append(name)
        files[f"app/{name}"] = (
            f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: bench-{i:02d}\ndata:\n  rev: '{revision}'\n"
        )
    files["app/kustomization.yaml"] = "resources:\n" + "".join(f"  - {n}\n" for n in names)
    return files


def manifests(repo_url: str) -> list[dict[str, Any]]:
    return [
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "webhook-token", "namespace": NAMESPACE},
         "stringData": {"token": TOKEN}},
        {"apiVersion": "notification.toolkit.fluxcd.io/v1", "kind": "Receiver",
         "metadata": {"name": "github", "namespace": NAMESPACE},
         "spec": {"type": "github", "events": ["push"], "secretRef": {"name": "webhook-token"},
                  "resources": [{"kind": "GitRepository", "name": "repo"},
                                {"kind": "Kustomization", "name": "apps"}]}},
        {"apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository",
         "metadata": {"name": "repo", "namespace": NAMESPACE},
         "spec": {"url": repo_url, "interval": "1h", "ref": {"branch": "main"}}},
        {"apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
         "metadata": {"name": "apps", "namespace": NAMESPACE},
         "spec": {"interval": "1h", "prune": True, "path": "./app", "targetNamespace": NAMESPACE,
                  "sourceRef": {"kind": "GitRepository", "name": "repo"}}},
    ]  # fmt: skip


async def wait_for(check: Any, limit: float, what: str, poll: float = 0.01) -> float:
    start = time.perf_counter()
    while True:
        if await check():
            return time.perf_counter() - start
        if time.perf_counter() - start > limit:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(poll)


async def webhook_to_applied(kubeconfig: Path, workdir: Path) -> list[dict[str, str]]:
    from tide.shared.kube import KubeClient

    os.environ["KUBECONFIG"] = str(kubeconfig)
    kubectl(kubeconfig, "apply", "--server-side", "--force-conflicts", "-f", str(CRDS))
    kubectl(kubeconfig, "wait", "--for=condition=Established", "--timeout=60s", "crd", "--all")
    kubectl(kubeconfig, "create", "namespace", NAMESPACE)
    git_server = GitServer(workdir / "git").start()
    procs: list[ControllerProcess] = []
    kube = await KubeClient.from_kubeconfig(str(kubeconfig))
    try:
        repo = git_server.create_repo("bench-app", configmaps(0))
        storage = f"127.0.0.1:{free_port()}"
        receiver_port = free_port()
        scoped = ["--watch-all-namespaces=false", f"--runtime-namespace={NAMESPACE}"]
        for name, args in (
            ("source", [f"--storage-path={workdir / 'storage'}", f"--storage-addr={storage}",
                        f"--storage-adv-addr={storage}", *scoped]),
            ("kustomize", [f"--source-storage-addr={storage}", *scoped]),
            ("notification", [f"--events-addr=127.0.0.1:{free_port()}",
                              f"--receiverAddr=127.0.0.1:{receiver_port}"]),
        ):  # fmt: skip
            proc = ControllerProcess(name=name, args=args, log_path=workdir / f"{name}.log")
            procs.append(proc)
            proc.start(60)
        kubectl(
            kubeconfig,
            "apply",
            "-f",
            "-",
            input=json.dumps({"apiVersion": "v1", "kind": "List", "items": manifests(repo.public_http_url)}),
        )

        async def status(api: str, kind: str, name: str) -> dict[str, Any]:
            obj = await kube.get(api, kind, name, NAMESPACE)
            return (obj or {}).get("status") or {}

        async def applied(sha: str) -> bool:
            st = await status("kustomize.toolkit.fluxcd.io/v1", "Kustomization", "apps")
            return str(st.get("lastAppliedRevision", "")).endswith(sha)

        async def artifact(sha: str) -> bool:
            st = await status("source.toolkit.fluxcd.io/v1", "GitRepository", "repo")
            return str((st.get("artifact") or {}).get("revision", "")).endswith(sha)

        async def receiver_path() -> str:
            return str(
                (await status("notification.toolkit.fluxcd.io/v1", "Receiver", "github")).get(
                    "webhookPath", ""
                )
            )

        await wait_for(receiver_path, 60, "Receiver webhookPath", poll=0.2)
        await wait_for(lambda: applied(repo.head()), 120, "first apply", poll=0.2)
        url = f"http://127.0.0.1:{receiver_port}{await receiver_path()}"
        await asyncio.sleep(1)  # the receiver server's cache sees the Receiver Ready

        totals, posts, artifacts = [], [], []
        async with aiohttp.ClientSession() as session:
            for run in range(1, RUNS + 1):
                sha = repo.commit(configmaps(run), f"rev {run}")
                body = json.dumps({"ref": "refs/heads/main", "after": sha}).encode()
                signature = "sha256=" + hmac.new(TOKEN.encode(), body, hashlib.sha256).hexdigest()
                headers = {"X-GitHub-Event": "push", "X-Hub-Signature-256": signature,
                           "Content-Type": "application/json"}  # fmt: skip
                start = time.perf_counter()
                async with session.post(url, data=body, headers=headers) as resp:
                    if resp.status != 200:
                        raise RuntimeError(f"webhook answered {resp.status}: {await resp.text()}")
                posts.append(time.perf_counter() - start)
                artifacts.append(await wait_for(lambda sha=sha: artifact(sha), 60, "artifact") + posts[-1])
                await wait_for(lambda sha=sha: applied(sha), 60, "new revision applied")
                totals.append(time.perf_counter() - start)
                await asyncio.sleep(0.5)
        ms = lambda xs: f"{statistics.median(xs) * 1000:.0f} ms"  # noqa: E731
        return [
            {"benchmark": f"notification: webhook POST -> revision applied ({OBJECTS} objects)",
             "value": ms(totals),
             "note": f"target < 2 s; median of {RUNS}; min {min(totals) * 1000:.0f} ms, "
                     f"max {max(totals) * 1000:.0f} ms; "
                     "real source/kustomize/notification processes, intervals 1h"},
            {"benchmark": "notification: webhook POST -> GitRepository artifact", "value": ms(artifacts),
             "note": f"median of {RUNS}"},
            {"benchmark": "notification: webhook POST answered (validate + requestedAt patches)",
             "value": ms(posts), "note": f"median of {RUNS}; 2 resources patched"},
        ]  # fmt: skip
    finally:
        # Delete the Flux objects while their controllers still run, so finalizers are removed.
        try:
            kubectl(
                kubeconfig,
                "delete",
                "kustomization,gitrepository,receiver",
                "--all",
                "-n",
                NAMESPACE,
                "--wait=true",
                "--timeout=60s",
            )
        except (RuntimeError, subprocess.TimeoutExpired):
            pass
        for proc in reversed(procs):
            proc.stop()
        await kube.close()
        git_server.stop()
        kubectl(kubeconfig, "delete", "namespace", NAMESPACE, "--wait=false")


async def events_in() -> list[dict[str, str]]:
    from tide.controllers.notification.dispatch import Dispatcher
    from tide.controllers.notification.events import EventServer
    from tide.controllers.notification.routing import EventRouter

    count = 1000
    received = 0
    done = asyncio.Event()

    async def handle(request: web.Request) -> web.Response:
        nonlocal received
        await request.read()
        received += 1
        if received == count:
            done.set()
        return web.Response(status=200)

    sink = web.Application()
    sink.router.add_post("/", handle)
    sink_runner = web.AppRunner(sink, access_log=None)
    await sink_runner.setup()
    sink_port = free_port()
    await web.TCPSite(sink_runner, "127.0.0.1", sink_port).start()

    class Cluster:
        async def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> Any:
            if kind == "Provider":
                return {
                    "metadata": {"name": name, "namespace": namespace},
                    "spec": {"type": "generic", "address": f"http://127.0.0.1:{sink_port}/"},
                }
            return None

    alerts = [
        {
            "metadata": {"name": "a", "namespace": "ns"},
            "spec": {"providerRef": {"name": "p"}, "eventSources": [{"kind": "GitRepository", "name": "*"}]},
        }
    ]

    async def list_alerts() -> list[dict[str, Any]]:
        return alerts

    dispatcher = Dispatcher()
    server = EventServer("127.0.0.1:0", EventRouter(Cluster(), dispatcher, list_alerts), 300)  # type: ignore[arg-type]
    await server.start()
    try:
        url = f"http://127.0.0.1:{server.port}/"
        start = time.perf_counter()
        async with aiohttp.ClientSession() as session:
            sem = asyncio.Semaphore(16)

            async def post(i: int) -> None:
                event = {
                    "involvedObject": {
                        "kind": "GitRepository",
                        "namespace": "ns",
                        "name": f"repo-{i}",
                        "apiVersion": "source.toolkit.fluxcd.io/v1",
                    },
                    "severity": "info",
                    "timestamp": "2026-01-01T00:00:00Z",
                    "message": f"m {i}",
                    "reason": "NewArtifact",
                    "reportingController": "source-controller",
                }
                async with sem, session.post(url, json=event) as resp:
                    assert resp.status == 202

            await asyncio.gather(*(post(i) for i in range(count)))
            accepted = time.perf_counter() - start
            await asyncio.wait_for(done.wait(), 60)
            delivered = time.perf_counter() - start
    finally:
        await server.stop()
        await dispatcher.close()
        await sink_runner.cleanup()
    return [
        {"benchmark": "notification: events accepted (202) per second", "value": f"{count / accepted:.0f}/s",
         "note": f"{count} distinct events, 16 concurrent senders, in-process"},
        {"benchmark": "notification: events delivered to a generic provider per second",
         "value": f"{count / delivered:.0f}/s", "note": "one provider, loopback HTTP sink"},
    ]  # fmt: skip


async def main() -> list[dict[str, str]]:
    rows = await events_in()
    workdir = Path(tempfile.mkdtemp(prefix="tide-bench-notification-"))
    plane: ControlPlane | None = None
    try:
        external = os.environ.get("TIDE_E2E_KUBECONFIG")
        if external:
            kubeconfig = Path(external)
        else:
            plane = ControlPlane(state=workdir / "cluster", kubeconfig=workdir / "kubeconfig")
            plane.up()
            kubeconfig = plane.kubeconfig
        rows += await webhook_to_applied(kubeconfig, workdir)
    finally:
        if plane is not None:
            plane.down()
        shutil.rmtree(workdir, ignore_errors=True)
    return rows
