"""`make demo`: a commit converging into a local cluster, end to end.

    python -m demo up     # control plane, CRDs, Git and chart servers, controllers, demo repo, bootstrap,
                          # wait until the app and its HelmRelease are Ready
    python -m demo down   # stop everything the demo started

`up` works on a control plane that has never seen Tide (the CRDs are installed before the controllers
start) and again on one where a previous demo ran (it replaces that demo's processes and files).

Everything lives under .tide/demo/: the Git server's repos, the chart repository nginx serves, the
controllers' logs and storage, and the working clone you edit (.tide/demo/repo).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from e2e.cluster import BIN, ROOT, ControlPlane, free_port

# TIDE_DEMO_HOME moves the demo's files (the e2e test runs the demo in a temp dir).
DEMO = Path(os.environ.get("TIDE_DEMO_HOME", ROOT / ".tide" / "demo"))
REPO = DEMO / "repo"
SERVED = DEMO / "served"
CHARTS = DEMO / "charts"
LOGS = DEMO / "logs"
STATE = DEMO / "state.json"
VENV_BIN = Path(sys.executable).parent
NAMESPACE = "flux-system"

APP = {
    "apps/demo/namespace.yaml": """\
        apiVersion: v1
        kind: Namespace
        metadata:
          name: demo
        """,
    "apps/demo/deployment.yaml": """\
        apiVersion: apps/v1
        kind: Deployment
        metadata:
          name: web
          namespace: demo
        spec:
          replicas: 1
          selector:
            matchLabels: {app: web}
          template:
            metadata:
              labels: {app: web}
            spec:
              containers:
                - name: web
                  image: ghcr.io/stefanprodan/podinfo:6.7.0
                  ports: [{containerPort: 9898}]
        """,
    "apps/demo/service.yaml": """\
        apiVersion: v1
        kind: Service
        metadata:
          name: web
          namespace: demo
        spec:
          selector: {app: web}
          ports: [{port: 80, targetPort: 9898}]
        """,
    "apps/demo/configmap.yaml": """\
        apiVersion: v1
        kind: ConfigMap
        metadata:
          name: web-settings
          namespace: demo
        data:
          greeting: "${greeting}"
          cluster: "${cluster_name:=local}"
        """,
    # The Kustomization waits for the HelmRelease too (wait: true): the release is part of the app.
    "apps/demo/helmrepository.yaml": """\
        apiVersion: source.toolkit.fluxcd.io/v1
        kind: HelmRepository
        metadata:
          name: charts
          namespace: demo
        spec:
          interval: 10m
          url: CHARTS_URL
        """,
    "apps/demo/helmrelease.yaml": """\
        apiVersion: helm.toolkit.fluxcd.io/v2
        kind: HelmRelease
        metadata:
          name: hello
          namespace: demo
        spec:
          interval: 10m
          timeout: 2m
          chart:
            spec:
              chart: hello
              version: "1.x"
              sourceRef:
                kind: HelmRepository
                name: charts
          values:
            greeting: Hello from Helm
        """,
    "clusters/local/apps.yaml": """\
        apiVersion: kustomize.toolkit.fluxcd.io/v1
        kind: Kustomization
        metadata:
          name: apps
          namespace: flux-system
        spec:
          interval: 10m
          sourceRef:
            kind: GitRepository
            name: flux-system
          path: ./apps/demo
          prune: true
          wait: true
          timeout: 2m
          postBuild:
            substitute:
              greeting: "Hello from Tide"
        """,
}


# The chart the demo's own repository serves: a Deployment and a ConfigMap of its values.
CHART = {
    "Chart.yaml": """\
        apiVersion: v2
        name: hello
        version: 1.0.0
        appVersion: "6.7.0"
        """,
    "values.yaml": """\
        greeting: Hello
        replicas: 1
        """,
    "templates/configmap.yaml": """\
        apiVersion: v1
        kind: ConfigMap
        metadata:
          name: {{ .Release.Name }}
        data:
          greeting: {{ .Values.greeting | quote }}
        """,
    "templates/deployment.yaml": """\
        apiVersion: apps/v1
        kind: Deployment
        metadata:
          name: {{ .Release.Name }}
        spec:
          replicas: {{ .Values.replicas }}
          selector:
            matchLabels: {app: {{ .Release.Name }}}
          template:
            metadata:
              labels: {app: {{ .Release.Name }}}
            spec:
              containers:
                - name: hello
                  image: ghcr.io/stefanprodan/podinfo:{{ .Chart.AppVersion }}
                  ports: [{containerPort: 9898}]
        """,
}


class Steps:
    """Prints each step with the time it took: the demo's output is what a newcomer reads first."""

    def __init__(self) -> None:
        self.start = time.monotonic()

    @contextlib.contextmanager
    def step(self, title: str) -> Iterator[None]:
        print(f"• {title} ...", end="", flush=True)
        began = time.monotonic()
        try:
            yield
        except BaseException:
            print(" failed")
            raise
        print(f" done ({time.monotonic() - began:.1f}s)", flush=True)

    @property
    def total(self) -> float:
        return time.monotonic() - self.start


def run(
    *args: str | Path,
    cwd: Path | None = None,
    check: bool = True,
    env: dict[str, str] | None = None,
    timeout: float = 300,
    input: str | None = None,
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )
    if check and result.returncode != 0:
        raise SystemExit(f"\n{' '.join(map(str, args))} failed:\n{result.stdout}{result.stderr}")
    return result


def spawn(name: str, *args: str) -> int:
    LOGS.mkdir(parents=True, exist_ok=True)
    log = open(LOGS / f"{name}.log", "ab")
    proc = subprocess.Popen(
        list(args),
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    return proc.pid


def wait(
    check: Callable[[], bool], timeout: float, what: str, why: Callable[[], str | None] | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            detail = f":\n{why()}" if why is not None else ""
            raise SystemExit(f"\ntimed out after {timeout:.0f}s waiting for {what}; logs in {LOGS}{detail}")
        time.sleep(0.3)


def kubectl(*args: str, check: bool = True, input: str | None = None) -> subprocess.CompletedProcess[str]:
    return run(BIN / "kubectl", *args, check=check, input=input)


def applied(kind: str, name: str, commit: str, namespace: str = NAMESPACE) -> bool:
    """Ready at this commit: a previous demo's status (an older commit) does not count."""
    got = kubectl("-n", namespace, "get", kind, name, "-o", "json", check=False)
    if got.returncode != 0:
        return False
    obj = json.loads(got.stdout)
    status = obj.get("status", {})
    return (
        status.get("observedGeneration") == obj["metadata"]["generation"]
        and str(status.get("lastAppliedRevision", "")).endswith(commit)
        and any(c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions", []))
    )


def released(name: str, namespace: str) -> bool:
    got = kubectl("-n", namespace, "get", "helmrelease", name, "-o", "json", check=False)
    if got.returncode != 0:
        return False
    obj = json.loads(got.stdout)
    status = obj.get("status", {})
    return status.get("observedGeneration") == obj["metadata"]["generation"] and any(
        c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions", [])
    )


def nginx_binary() -> str:
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if found is None:
        raise SystemExit("the demo serves its Helm chart repository with nginx: install nginx first")
    return found


def readyz(port: int) -> str | None:
    """None when the controller is ready, else what its /readyz says (a missing CRD, caches syncing)."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1):
            return None
    except urllib.error.HTTPError as err:
        return err.read().decode(errors="replace").strip()
    except OSError as err:
        return f"not listening yet ({err})"


def write_files(root: Path, files: dict[str, str], charts_url: str = "") -> None:
    for path, text in files.items():
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(textwrap.dedent(text).replace("CHARTS_URL", charts_url))


def serve_charts(port: int) -> str:
    """The demo's chart repository: the chart packaged by the real `helm package`, indexed by
    `helm repo index`, served over HTTP by nginx (as a chart repository is); returns its URL."""
    www, tmp = CHARTS / "www", CHARTS / "tmp"
    url = f"http://127.0.0.1:{port}/"
    write_files(CHARTS / "src" / "hello", CHART)
    helm_env = {f"HELM_{d}_HOME": str(CHARTS / "home" / d.lower()) for d in ("CACHE", "CONFIG", "DATA")}
    www.mkdir(parents=True, exist_ok=True)
    tmp.mkdir(exist_ok=True)
    run(BIN / "helm", "package", CHARTS / "src" / "hello", "--destination", www, env=helm_env)
    run(BIN / "helm", "repo", "index", www, "--url", url, env=helm_env)
    # As root, nginx's workers would drop to nobody, who may not read the demo's directory.
    (CHARTS / "nginx.conf").write_text(f"""
daemon off;
{"user root;" if os.getuid() == 0 else ""}
worker_processes 1;
pid {CHARTS}/nginx.pid;
error_log {LOGS}/chart-server.error.log warn;
events {{ worker_connections 64; }}
http {{
  types {{ application/x-yaml yaml; application/gzip tgz; }}
  access_log {LOGS}/chart-server.access.log;
  client_body_temp_path {tmp}/body; proxy_temp_path {tmp}/proxy; fastcgi_temp_path {tmp}/fastcgi;
  uwsgi_temp_path {tmp}/uwsgi; scgi_temp_path {tmp}/scgi;
  server {{
    listen 127.0.0.1:{port};
    root {www};
  }}
}}
""")
    return url


def control_plane(cluster_dir: str | None) -> ControlPlane:
    """The local control plane: `make cluster-up`'s (.tide/cluster), or one kept in cluster_dir."""
    if cluster_dir is None:
        return ControlPlane()
    return ControlPlane(state=Path(cluster_dir), kubeconfig=Path(cluster_dir) / "kubeconfig")


def up(kubeconfig: str | None = None, cluster_dir: str | None = None) -> None:
    steps = Steps()
    stop_demo()
    DEMO.mkdir(parents=True, exist_ok=True)
    state: dict[str, object] = {"pids": {}}
    pids: dict[str, int] = state["pids"]  # type: ignore[assignment]
    ports = {name: free_port() for name in ("storage", "events", "receiver")}
    state["ports"] = ports

    with steps.step("Starting a local Kubernetes control plane (etcd, kube-apiserver, kwok node)"):
        if kubeconfig:
            os.environ["KUBECONFIG"] = kubeconfig
        else:
            plane = control_plane(cluster_dir)
            if not plane.running():
                plane.up()
            os.environ["KUBECONFIG"] = str(plane.kubeconfig)

    # Before any controller starts: a controller waits for its CRDs, and so would the demo.
    with steps.step("Installing Tide's CRDs (tide install --crds-only)"):
        run(VENV_BIN / "tide", "install", "--crds-only", "--timeout=2m")

    with steps.step("Serving the demo's Helm chart repository (helm package, nginx)"):
        ports["charts"] = free_port()
        state["charts"] = serve_charts(ports["charts"])
        pids["chart-server"] = spawn("chart-server", nginx_binary(), "-c", str(CHARTS / "nginx.conf"))
        STATE.write_text(json.dumps(state))  # so that `make demo-down` stops it whatever fails next
        index = f"{state['charts']}index.yaml"
        wait(lambda: run("curl", "-sf", "-o", "/dev/null", index, check=False).returncode == 0, 30,
             "nginx to serve the chart repository")  # fmt: skip

    with steps.step("Starting a Git server and creating the demo repository"):
        SERVED.mkdir(parents=True, exist_ok=True)
        run("git", "init", "--bare", "-q", "-b", "main", SERVED / "demo.git")
        run("git", "-C", SERVED / "demo.git", "config", "http.receivepack", "true")
        pids["git-server"] = spawn(
            "git-server", sys.executable, "-m", "e2e.fixtures.git_http", "--root", str(SERVED)
        )
        listening = LOGS / "git-server.log"
        wait(lambda: listening.read_text().startswith("{"), 30, "the Git server to listen")
        ports["git"] = json.loads(listening.read_text().splitlines()[0])["http"]
        url = f"http://127.0.0.1:{ports['git']}/public/demo.git"
        wait(lambda: run("git", "ls-remote", url, check=False).returncode == 0, 30, "the Git server")
        run("git", "clone", "-q", url, REPO)
        for key, value in (("user.name", "Demo"), ("user.email", "demo@tide.local")):
            run("git", "-C", REPO, "config", key, value)
        write_files(REPO, APP, state["charts"])  # type: ignore[arg-type]
        run("git", "-C", REPO, "add", "-A")
        run("git", "-C", REPO, "commit", "-qm", "Demo app")
        run("git", "-C", REPO, "push", "-q", "origin", "main")
        state["url"] = url

    with steps.step("Starting the source, kustomize, helm and notification controllers"):
        events = f"http://127.0.0.1:{ports['events']}/"
        common = ["--watch-all-namespaces=true", "--log-level=info"]
        pids["source"] = spawn(
            "source-controller",
            str(VENV_BIN / "tide-source-controller"),
            *common,
            f"--storage-path={DEMO / 'storage'}",
            f"--storage-addr=127.0.0.1:{ports['storage']}",
            f"--storage-adv-addr=127.0.0.1:{ports['storage']}",
            f"--events-addr={events}",
            f"--metrics-addr=127.0.0.1:{free_port()}",
            f"--health-addr=127.0.0.1:{(sh := free_port())}",
        )
        pids["kustomize"] = spawn(
            "kustomize-controller",
            str(VENV_BIN / "tide-kustomize-controller"),
            *common,
            f"--events-addr={events}",
            f"--source-storage-addr=127.0.0.1:{ports['storage']}",
            f"--metrics-addr=127.0.0.1:{free_port()}",
            f"--health-addr=127.0.0.1:{(kh := free_port())}",
        )
        pids["helm"] = spawn(
            "helm-controller",
            str(VENV_BIN / "tide-helm-controller"),
            *common,
            f"--events-addr={events}",
            f"--source-storage-addr=127.0.0.1:{ports['storage']}",
            f"--metrics-addr=127.0.0.1:{free_port()}",
            f"--health-addr=127.0.0.1:{(hh := free_port())}",
        )
        pids["notification"] = spawn(
            "notification-controller",
            str(VENV_BIN / "tide-notification-controller"),
            *common,
            f"--events-addr=127.0.0.1:{ports['events']}",
            f"--receiverAddr=127.0.0.1:{ports['receiver']}",
            f"--metrics-addr=127.0.0.1:{free_port()}",
            f"--health-addr=127.0.0.1:{(nh := free_port())}",
        )
        STATE.write_text(json.dumps(state))
        for name, port in (("source", sh), ("kustomize", kh), ("helm", hh), ("notification", nh)):
            wait(
                lambda port=port: readyz(port) is None,
                120,
                f"the {name} controller's /readyz",
                why=lambda port=port: readyz(port),
            )

    with steps.step(
        "Bootstrapping: Tide's manifests committed to clusters/local/flux-system, synced from Git"
    ):
        run(
            VENV_BIN / "tide",
            "bootstrap",
            "git",
            f"--url={url}",
            "--branch=main",
            "--path=clusters/local",
            "--crds-only",
            "--silent",
            "--timeout=3m",
        )
        run("git", "-C", REPO, "pull", "-q", "--ff-only")
        head = run("git", "-C", REPO, "rev-parse", "HEAD").stdout.strip()

    with steps.step("Waiting until the demo app and its HelmRelease are applied and healthy"):
        wait(lambda: applied("kustomization", "apps", head), 240, f"Kustomization apps Ready at {head[:12]}")
        wait(lambda: released("hello", "demo"), 60, "HelmRelease demo/hello Ready")

    with steps.step("Adding a Receiver and a post-receive hook, so a push converges at once"):
        secret = kubectl(
            "-n",
            NAMESPACE,
            "create",
            "secret",
            "generic",
            "webhook-token",
            "--from-literal=token=demo-webhook-token",
            "--dry-run=client",
            "-o=json",
        ).stdout
        kubectl("apply", "-f", "-", input=secret)  # apply: a second demo finds it there
        run(
            VENV_BIN / "tide",
            "create",
            "receiver",
            "git-push",
            "--type=generic",
            "--secret-ref=webhook-token",
            "--resource=GitRepository/flux-system",
            "--timeout=1m",
        )
        path = json.loads(kubectl("-n", NAMESPACE, "get", "receiver", "git-push", "-o", "json").stdout)[
            "status"
        ]["webhookPath"]
        hook = SERVED / "demo.git" / "hooks" / "post-receive"
        hook.write_text(
            f"#!/bin/sh\ncurl -s -o /dev/null -X POST http://127.0.0.1:{ports['receiver']}{path}\n"
        )
        hook.chmod(0o755)

    print(
        textwrap.dedent(f"""
        Tide is running: the demo app converged from Git in {steps.total:.0f}s.

          export KUBECONFIG={os.environ["KUBECONFIG"]} PATH={BIN}:{VENV_BIN}:$PATH
          tide get kustomizations            # flux-system and apps, Ready
          tide get hr -n demo                # the HelmRelease hello, from the demo's chart repository
          kubectl -n demo get deploy,svc,cm  # what Git declared, and what Helm released

        Change something and push; the post-receive hook calls the Receiver, so it converges at once:

          cd {REPO}
          sed -i 's/replicas: 1/replicas: 3/' apps/demo/deployment.yaml
          git commit -am 'Scale web to 3' && git push
          tide get kustomizations -w        # Applied revision: main@sha1:...
          kubectl -n demo get deploy web

        Logs: {LOGS}/.   Stop everything: make demo-down
        """)
    )


def alive(pid: int) -> bool:
    try:
        os.killpg(pid, 0)
    except ProcessLookupError:
        return False
    return True


def stop_demo() -> None:
    """Stops the demo's processes (and waits for them, so a next demo never races the old
    controllers) and removes its files; the control plane is left running."""
    if STATE.exists():
        pids = list(json.loads(STATE.read_text()).get("pids", {}).values())
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.1)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
    if DEMO.exists():
        shutil.rmtree(DEMO, ignore_errors=True)


def down(keep_cluster: bool = False, cluster_dir: str | None = None) -> None:
    stop_demo()
    if not keep_cluster:
        control_plane(cluster_dir).down()
    print(f"demo: stopped the controllers, the Git server{'' if keep_cluster else ' and the control plane'}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m demo", description=__doc__)
    parser.add_argument("command", choices=["up", "down"])
    parser.add_argument("--kubeconfig", help="use this cluster instead of starting the local control plane")
    parser.add_argument("--keep-cluster", action="store_true", help="down: leave the control plane running")
    parser.add_argument(
        "--cluster-dir", help="keep the local control plane in this directory instead of .tide/cluster"
    )
    args = parser.parse_args(argv)
    if args.command == "up":
        up(args.kubeconfig, args.cluster_dir)
    else:
        down(args.keep_cluster, args.cluster_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
