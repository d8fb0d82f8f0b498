"""Flux's 1000-HelmRelease scenario (flux-benchmark's flux-hr-bench), at N=100 by default.

One OCI HelmRepository (a podinfo-like chart: Deployment at 0 replicas, ServiceAccount, Service,
Ingress, pushed with the real `helm push` to a real docker-registry) and N HelmReleases applied at once,
each with its own chart template, so one HelmChart per release, and flux-hr-bench's settings: release
name `podinfo-<i>`, target and storage namespace the HelmReleases' own, interval 60m, chart interval
600m, `install.crds: Create`, values replicaCount 0, serviceAccount and ingress enabled, requests
1m CPU / 16Mi. Measured: the time from the apply until all N are Ready, and the helm controller's peak
memory as the PSS of its whole process tree (the controller and its Helm worker processes), sampled
every 0.25 s. Flux's published figure for N=1000 (v2.9.0, helm-controller --concurrent=10, 2 CPUs, on a
16-core runner) is shown beside it, never as a ratio.

Drift detection is on and `upgrade.crds` is CreateReplace, as in flux-benchmark; left out, and said in
the row: `serviceAccountName`.

    python -m bench helm                          # with the index figures, N=100
    python -m bench.helm_releases --releases 1000  # this scenario alone, Flux's N
    TIDE_BENCH_HELM_RELEASES=1000 make bench       # (0 skips it)

Uses TIDE_E2E_KUBECONFIG when set, else starts its own control plane in a temp directory.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench import BenchmarkFailed
from bench.bench_kustomize import kubectl
from bench.process_tree import TreeSampler

if TYPE_CHECKING:
    from e2e.fixtures.oci import Registry

ROOT = Path(__file__).resolve().parent.parent
CRDS = ROOT / "charts" / "tide" / "crds"
NAMESPACE = "bench-helm-releases"
# flux-benchmark RESULTS.md, v2.9.0, kind on a 16-core runner (helm-controller 2 CPU, --concurrent=10).
PUBLISHED_TIME = "Flux v2.9.0, N=1000: 4m39s (N=100: 26s); 16-core runner"
PUBLISHED_MEMORY = "Flux v2.9.0, N=1000: 361 MiB (N=100: 286 MiB); max memory"

CHART = {
    "Chart.yaml": "apiVersion: v2\nname: podinfo\nversion: 6.5.3\nappVersion: 6.5.3\n",
    "values.yaml": (
        "replicaCount: 1\nserviceAccount:\n  enabled: false\ningress:\n  enabled: false\n  className: ''\n"
        "resources:\n  requests:\n    cpu: 1m\n    memory: 16Mi\n"
    ),
    "templates/deployment.yaml": """apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ .Release.Name }}
  labels: {app.kubernetes.io/name: {{ .Release.Name }}}
spec:
  replicas: {{ .Values.replicaCount }}
  selector:
    matchLabels: {app.kubernetes.io/name: {{ .Release.Name }}}
  template:
    metadata:
      labels: {app.kubernetes.io/name: {{ .Release.Name }}}
    spec:
      {{- if .Values.serviceAccount.enabled }}
      serviceAccountName: {{ .Release.Name }}
      {{- end }}
      containers:
        - name: podinfod
          image: ghcr.io/stefanprodan/podinfo:{{ .Chart.AppVersion }}
          ports: [{name: http, containerPort: 9898}]
          resources: {{- toYaml .Values.resources | nindent 12 }}
""",
    "templates/serviceaccount.yaml": """{{- if .Values.serviceAccount.enabled }}
apiVersion: v1
kind: ServiceAccount
metadata:
  name: {{ .Release.Name }}
{{- end }}
""",
    "templates/service.yaml": """apiVersion: v1
kind: Service
metadata:
  name: {{ .Release.Name }}
spec:
  selector: {app.kubernetes.io/name: {{ .Release.Name }}}
  ports: [{name: http, port: 9898, targetPort: http}]
""",
    "templates/ingress.yaml": """{{- if .Values.ingress.enabled }}
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: {{ .Release.Name }}
spec:
  ingressClassName: {{ .Values.ingress.className }}
  rules:
    - host: {{ .Release.Name }}.local
      http:
        paths:
          - path: /
            pathType: Prefix
            backend:
              service: {name: {{ .Release.Name }}, port: {name: http}}
{{- end }}
""",
}


def helm_release(namespace: str, index: int) -> dict[str, Any]:
    name = f"podinfo-{index}"
    spec: dict[str, Any] = {
        "releaseName": name,
        "targetNamespace": namespace,
        "storageNamespace": namespace,
        "interval": "60m",
        "chart": {
            "spec": {
                "chart": "podinfo",
                "version": "6.5.3",
                "sourceRef": {"kind": "HelmRepository", "name": "podinfo"},
                "interval": "600m",
            }
        },
        "install": {"crds": "Create"},
        "upgrade": {"crds": "CreateReplace"},
        "driftDetection": {"mode": "enabled"},
        "values": {
            "replicaCount": 0,
            "serviceAccount": {"enabled": True},
            "ingress": {"enabled": True, "className": "nginx"},
            "resources": {"requests": {"cpu": "1m", "memory": "16Mi"}},
        },
    }
    return {
        "apiVersion": "helm.toolkit.fluxcd.io/v2",
        "kind": "HelmRelease",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def ready(obj: dict[str, Any]) -> bool:
    status = obj.get("status") or {}
    return status.get("observedGeneration") == obj["metadata"].get("generation") and any(
        c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or []
    )


def push_chart(registry: Registry, workdir: Path) -> str:
    """CHART packaged and pushed with the real `helm push`; the HelmRepository's URL."""
    from e2e.fixtures.helm_repo import helm

    chart = workdir / "chart" / "podinfo"
    for path, text in CHART.items():
        (chart / path).parent.mkdir(parents=True, exist_ok=True)
        (chart / path).write_text(text)
    home = workdir / "helm-home"
    out = helm("package", str(chart), "--destination", str(workdir), home=home).stdout
    archive = out.strip().rsplit(": ", 1)[-1]
    helm("push", archive, f"oci://{registry.host}/charts", "--plain-http", home=home)
    return f"oci://{registry.host}/charts"


def release_items(namespace: str, url: str, n: int) -> list[dict[str, Any]]:
    """The scenario's objects: the OCI HelmRepository at `url` and N HelmReleases of its chart."""
    repository = {
        "apiVersion": "source.toolkit.fluxcd.io/v1",
        "kind": "HelmRepository",
        "metadata": {"name": "podinfo", "namespace": namespace},
        "spec": {"type": "oci", "url": url, "insecure": True, "interval": "12h", "timeout": "2m"},
    }
    return [repository, *(helm_release(namespace, i) for i in range(n))]


async def suspend_releases(kube: Any, namespace: str) -> None:
    """Suspends every HelmRelease in the namespace, so that deleting it drops their finalizers without
    N Helm uninstalls (the releases' objects go with the namespace)."""
    with contextlib.suppress(Exception):
        for hr in await kube.list("helm.toolkit.fluxcd.io/v2", "HelmRelease", namespace):
            await kube.patch_merge("helm.toolkit.fluxcd.io/v2", "HelmRelease", hr["metadata"]["name"],
                                   namespace, {"spec": {"suspend": True}})  # fmt: skip


async def releases(kubeconfig: Path, workdir: Path, n: int) -> list[dict[str, str]]:
    from e2e.cluster import free_port
    from e2e.fixtures.controllers import ControllerProcess
    from e2e.fixtures.oci import Registry
    from tide.shared.kube import KubeClient

    ns = f"{NAMESPACE}-{n}"
    kubectl(kubeconfig, "delete", "namespace", ns, "--ignore-not-found", "--wait=true")
    kubectl(kubeconfig, "create", "namespace", ns)
    registry = Registry(workdir / "registry").start()
    kube = await KubeClient.from_kubeconfig(str(kubeconfig))
    procs: list[ControllerProcess] = []
    try:
        url = push_chart(registry, workdir)
        storage = f"127.0.0.1:{free_port()}"
        scoped = ["--watch-all-namespaces=false", f"--runtime-namespace={ns}", "--concurrent=10"]
        source = ControllerProcess("source", [*scoped, f"--storage-path={workdir / 'storage'}",
                                              f"--storage-addr={storage}", f"--storage-adv-addr={storage}"],
                                   workdir / "source.log")  # fmt: skip
        helm_controller = ControllerProcess(
            "helm", [*scoped, f"--source-storage-addr={storage}"], workdir / "helm.log"
        )
        for proc in (source, helm_controller):
            procs.append(proc)
            proc.start(120)
        assert helm_controller.proc is not None
        items = release_items(ns, url, n)
        with TreeSampler({"helm": helm_controller.proc.pid}, interval=0.25) as memory:
            start = time.perf_counter()
            kubectl(kubeconfig, "apply", "--server-side", "-f", "-",
                    input=json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))  # fmt: skip
            while True:
                listed = await kube.list("helm.toolkit.fluxcd.io/v2", "HelmRelease", ns)
                done = sum(1 for hr in listed if ready(hr))
                if done == n:
                    break
                if time.perf_counter() - start > max(900, n * 3):
                    raise BenchmarkFailed(f"did not converge: {done}/{n} HelmReleases Ready")
                await asyncio.sleep(0.5)
            took = time.perf_counter() - start
        charts = await kube.list("source.toolkit.fluxcd.io/v1", "HelmChart", ns)
        if len(charts) != n:
            raise BenchmarkFailed(f"expected one HelmChart per release, found {len(charts)} for {n}")
        minutes, seconds = divmod(took, 60)
        return [
            {"benchmark": f"helm: {n} HelmReleases (OCI HelmRepository, a HelmChart each): time to all Ready",
             "value": f"{int(minutes)}m{seconds:04.1f}s" if minutes else f"{took:.1f} s",
             "published": PUBLISHED_TIME,
             "note": "drift detection on; upgrade.crds CreateReplace; without serviceAccountName; "
                     f"--concurrent=10 as Flux's run; "
                     f"{n * 4} objects; 2 cores shared, load average {os.getloadavg()[0]:.1f}"},
            {"benchmark": f"helm: {n} HelmReleases: helm controller peak memory (PSS, process tree)",
             "value": f"{memory.peak_kib['helm'] / 1024:.0f} MiB",
             "published": PUBLISHED_MEMORY,
             "note": f"controller + Helm workers (up to {memory.peak_processes['helm']} processes), "
                     "sampled every 0.25 s"},
        ]  # fmt: skip
    finally:
        await suspend_releases(kube, ns)
        with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
            kubectl(kubeconfig, "delete", "namespace", ns, "--wait=true", "--timeout=300s", timeout=330)
        for proc in reversed(procs):
            proc.stop()
        registry.stop()
        await kube.close()


async def main(n: int | None = None) -> list[dict[str, str]]:
    from e2e.cluster import ControlPlane

    n = n if n is not None else int(os.environ.get("TIDE_BENCH_HELM_RELEASES", "100"))
    if n <= 0:
        return []
    workdir = Path(tempfile.mkdtemp(prefix="tide-bench-helm-releases-"))
    plane: ControlPlane | None = None
    external = os.environ.get("TIDE_E2E_KUBECONFIG")
    try:
        if external:
            kubeconfig = Path(external)
        else:
            plane = ControlPlane.private(workdir)
            kubeconfig = plane.kubeconfig
        os.environ["KUBECONFIG"] = str(kubeconfig)
        kubectl(kubeconfig, "apply", "--server-side", "--force-conflicts", "-f", str(CRDS))
        kubectl(kubeconfig, "wait", "--for=condition=Established", "--timeout=60s", "crd", "--all")
        return await releases(kubeconfig, workdir, n)
    finally:
        if plane is not None:
            plane.down()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--releases", type=int, default=None, help="N (default 100, Flux's figure is N=1000)")
    for row in asyncio.run(main(parser.parse_args().releases)):
        print(row)
