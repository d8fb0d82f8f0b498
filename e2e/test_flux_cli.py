"""The Flux CLI itself (v2.9, built from fluxcd/flux2 by tools/build.sh) on Tide's objects:
`flux get`, `reconcile`, `suspend`, `resume`, `tree` and `events` read and drive them as Flux's own."""

from __future__ import annotations

import pytest

from e2e.fixtures.kustomize import deployment, get_obj, git_source, kustomization, wait_ks
from e2e.fixtures.source import apply, condition

pytestmark = pytest.mark.e2e


def configmap(name: str, **data: str) -> str:
    lines = "".join(f'  {k}: "{v}"\n' for k, v in data.items())
    return f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n{lines}"


def rows(out: str) -> list[list[str]]:
    """flux get's table (tab-separated columns), without its header."""
    return [[cell.strip() for cell in line.split("\t")][:5] for line in out.splitlines()[1:] if line.strip()]


def test_flux_cli_drives_tide(git_server, flux_controllers, flux, kubectl, namespace) -> None:  # type: ignore[no-untyped-def]
    repo = git_server.create_repo(f"flux-cli-{namespace}", {
        "deploy/a.yaml": configmap("a", color="blue"),
        "deploy/b.yaml": configmap("b", color="red"),
    })  # fmt: skip
    flux_controllers()
    apply(kubectl, namespace, git_source("repo", repo.public_http_url, interval="1h"),
          kustomization("app", path="./deploy", interval="1h", targetNamespace=namespace))  # fmt: skip
    head = f"main@sha1:{repo.head()}"
    wait_ks(kubectl, namespace, "app", revision=head)
    ns = ["-n", namespace, "--timeout=90s"]

    short = head[: len("main@sha1:") + 8]
    assert rows(flux("get", "sources", "git", *ns).stdout) == [
        ["repo", short, "False", "True", f"stored artifact for revision '{short}'"]]  # fmt: skip
    assert rows(flux("get", "kustomizations", *ns).stdout) == [
        ["app", short, "False", "True", f"Applied revision: {short}"]]  # fmt: skip

    # A new commit, reconciled on demand with its source: flux waits on Tide's status fields.
    repo.commit({"deploy/a.yaml": configmap("a", color="green")})
    new_head = f"main@sha1:{repo.head()}"
    res = flux("reconcile", "kustomization", "app", "--with-source", *ns)
    assert f"fetched revision {new_head}" in res.stderr and f"applied revision {new_head}" in res.stderr
    assert get_obj(kubectl, namespace, "configmap", "a")["data"] == {"color": "green"}

    flux("suspend", "kustomization", "app", *ns)
    assert get_obj(kubectl, namespace, "kustomization", "app")["spec"]["suspend"] is True
    assert rows(flux("get", "kustomizations", *ns).stdout)[0][:4] == ["app", new_head[:18], "True", "True"]
    res = flux("resume", "kustomization", "app", *ns)
    assert f"applied revision {new_head}" in res.stderr
    assert not get_obj(kubectl, namespace, "kustomization", "app")["spec"].get("suspend")

    assert flux("tree", "kustomization", "app", *ns).stdout.strip().splitlines() == [
        f"Kustomization/{namespace}/app",
        f"├── ConfigMap/{namespace}/a",
        f"└── ConfigMap/{namespace}/b",
    ]
    events = flux("events", "--for", "Kustomization/app", *ns).stdout
    assert "ReconciliationSucceeded" in events and f"ConfigMap/{namespace}/a configured" in events

    # A failing Kustomization reads as Flux's would: Ready False with the reason in the message.
    apply(kubectl, namespace, kustomization("broken", path="./missing", targetNamespace=namespace))
    wait_ks(kubectl, namespace, "broken", status="False")
    broken = next(r for r in rows(flux("get", "kustomizations", *ns).stdout) if r[0] == "broken")
    assert broken[1:4] == ["", "False", "False"] and "'./missing'" in broken[4]


def test_flux_create_kustomization_with_a_health_check(git_server, flux_controllers, flux, kubectl,  # type: ignore[no-untyped-def]
                                                       namespace) -> None:  # fmt: skip
    """Flux's own e2e workflow: `--health-check=Deployment/NAME.NS` writes no apiVersion; Tide resolves
    it to the API server's preferred version of the kind, as Flux does."""
    repo = git_server.create_repo(f"flux-hc-{namespace}", {"deploy/web.yaml": deployment("web", 1)})
    flux_controllers()
    apply(kubectl, namespace, git_source("repo", repo.public_http_url, interval="1h"))
    ns = ["-n", namespace, "--timeout=90s"]
    res = flux("create", "kustomization", "web", "--source=GitRepository/repo", "--path=./deploy",
               "--prune=true", "--interval=1h", f"--target-namespace={namespace}",
               f"--health-check=Deployment/web.{namespace}", "--health-check-timeout=60s", *ns)  # fmt: skip
    head = f"main@sha1:{repo.head()}"
    assert f"applied revision {head}" in res.stderr
    ks = get_obj(kubectl, namespace, "kustomization", "web")
    assert ks["spec"]["healthChecks"] == [{"kind": "Deployment", "name": "web", "namespace": namespace}]
    assert condition(ks, "Healthy")["status"] == "True"
    assert get_obj(kubectl, namespace, "deployment", "web")["status"].get("availableReplicas") == 1

    # The next revision, on demand with its source, and a suspend/resume: each returns once handled.
    repo.commit({"deploy/web.yaml": deployment("web", 2)})
    new_head = f"main@sha1:{repo.head()}"
    res = flux("reconcile", "kustomization", "web", "--with-source", *ns)
    assert f"applied revision {new_head}" in res.stderr
    assert get_obj(kubectl, namespace, "deployment", "web")["status"].get("availableReplicas") == 2
    flux("suspend", "kustomization", "web", *ns)
    res = flux("resume", "kustomization", "web", *ns)
    assert f"applied revision {new_head}" in res.stderr

    # A kind no API group serves: a clear message, not a 404 on a guessed version.
    kubectl("patch", "kustomization", "web", "-n", namespace, "--type=json", "-p",
            '[{"op": "add", "path": "/spec/healthChecks/-", '
            '"value": {"kind": "Frobnicator", "name": "x"}}]')  # fmt: skip
    ks = wait_ks(kubectl, namespace, "web", status="False", reason="HealthCheckFailed",
                 contains="Frobnicator")  # fmt: skip
    assert "the API server does not serve the kind Frobnicator" in condition(ks, "Ready")["message"]


def test_flux_reconcile_during_a_long_health_wait(git_server, flux_controllers, flux, kubectl,  # type: ignore[no-untyped-def]
                                                  namespace) -> None:  # fmt: skip
    """With Flux's CancelHealthCheckOnNewRevision gate, `flux reconcile --with-source` during a
    10-minute health wait returns once the fix is applied, not after the wait."""
    gate = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: gate\ndata:\n  state: pending\n"
    repo = git_server.create_repo(f"flux-wait-{namespace}", {"gate.yaml": gate})
    flux_controllers("--feature-gates=CancelHealthCheckOnNewRevision=true")
    exprs = [{"apiVersion": "v1", "kind": "ConfigMap", "current": "self.data.state == 'ready'"}]
    apply(kubectl, namespace, git_source("repo", repo.public_http_url, interval="1h"),
          kustomization("app", interval="1h", targetNamespace=namespace, wait=True, timeout="10m",
                        healthCheckExprs=exprs))  # fmt: skip
    ks = wait_ks(kubectl, namespace, "app", status="Unknown", contains="health checks")
    assert condition(ks, "Reconciling")["message"].startswith("Running health checks for revision")
    assert condition(ks, "Healthy")["status"] == "Unknown"

    repo.commit({"gate.yaml": gate.replace("pending", "ready")})
    res = flux("reconcile", "kustomization", "app", "--with-source", "-n", namespace, "--timeout=90s")
    assert f"applied revision main@sha1:{repo.head()}" in res.stderr
    assert condition(get_obj(kubectl, namespace, "kustomization", "app"), "Healthy")["status"] == "True"


def test_flux_cli_reads_helm_sources(
    chart_repo, chart_server, source_controller, flux, kubectl, namespace
) -> None:  # type: ignore[no-untyped-def]
    from e2e.fixtures.helm_repo import PASSWORD, USER
    from e2e.fixtures.source import secret, wait_ready

    chart_repo.publish("app", "1.0.0")
    source_controller()
    api = "source.toolkit.fluxcd.io/v1"
    apply(
        kubectl,
        namespace,
        secret("auth", {"username": USER, "password": PASSWORD}),
        secret("ca", {"ca.crt": chart_server.pki.ca_pem}),
        {
            "apiVersion": api,
            "kind": "HelmRepository",
            "metadata": {"name": "charts"},
            "spec": {
                "url": chart_repo.url,
                "interval": "1h",
                "secretRef": {"name": "auth"},
                "certSecretRef": {"name": "ca"},
            },
        },
        {
            "apiVersion": api,
            "kind": "HelmChart",
            "metadata": {"name": "app"},
            "spec": {
                "chart": "app",
                "interval": "1h",
                "sourceRef": {"kind": "HelmRepository", "name": "charts"},
            },
        },
    )
    repo = wait_ready(kubectl, namespace, "charts", kind="helmrepository")
    revision = repo["status"]["artifact"]["revision"]
    wait_ready(kubectl, namespace, "app", "1.0.0", kind="helmchart")
    ns = ["-n", namespace, "--timeout=90s"]

    [helm_row] = rows(flux("get", "sources", "helm", *ns).stdout)
    assert helm_row[0] == "charts" and revision.startswith(helm_row[1]) and helm_row[2:4] == ["False", "True"]
    # Flux's CLI shortens digests to 8 hex characters, in the message too.
    assert helm_row[1] == revision[: len("sha256:") + 8]
    assert helm_row[4] == f"stored artifact: revision '{helm_row[1]}'"
    assert rows(flux("get", "sources", "chart", *ns).stdout) == [
        ["app", "1.0.0", "False", "True", "pulled 'app' chart with version '1.0.0'"]
    ]

    # Flux's reconcile waits on Tide's status; a new version moves the chart.
    chart_repo.publish("app", "1.1.0")
    flux("reconcile", "source", "helm", "charts", *ns)
    wait_ready(kubectl, namespace, "app", "1.1.0", kind="helmchart")
    flux("suspend", "source", "chart", "app", *ns)
    assert rows(flux("get", "sources", "chart", *ns).stdout)[0][:3] == ["app", "1.1.0", "True"]
    res = flux("resume", "source", "chart", "app", *ns)
    assert "1.1.0" in res.stderr
