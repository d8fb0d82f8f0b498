"""HelmRepository and HelmChart end to end: charts written by the tests and packaged by the real
`helm`, served by nginx over HTTPS with basic auth, pushed to the real docker-registry with
`helm push`, or committed to a real Git server; every artifact rendered by `helm template`."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from e2e.fixtures.helm_repo import PASSWORD, USER, ChartRepo, helm, write_chart
from e2e.fixtures.oci import PASSWORD as REGISTRY_PASSWORD
from e2e.fixtures.oci import USER as REGISTRY_USER
from e2e.fixtures.source import (
    apply,
    condition,
    request_reconcile,
    secret,
    wait_failing,
    wait_for,
    wait_handled,
    wait_ready,
)

pytestmark = pytest.mark.e2e

REPO = "helmrepository"
CHART = "helmchart"
API = "source.toolkit.fluxcd.io/v1"


def helm_repository(name: str, url: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": "HelmRepository",
        "metadata": {"name": name},
        "spec": {"url": url, "interval": "10m", "timeout": "20s", **spec},
    }


def helm_chart(
    name: str, chart: str, source: str, kind: str = "HelmRepository", **spec: Any
) -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": "HelmChart",
        "metadata": {"name": name},
        "spec": {"chart": chart, "interval": "10m", "sourceRef": {"kind": kind, "name": source}, **spec},
    }


def served_repository(chart_server: Any, chart_repo: ChartRepo, name: str = "charts") -> list[dict[str, Any]]:
    """The test's directory on nginx as a HelmRepository, with its basic auth and CA secrets."""
    return [
        secret("charts-auth", {"username": USER, "password": PASSWORD}),
        secret("charts-ca", {"ca.crt": chart_server.pki.ca_pem}),
        helm_repository(
            name, chart_repo.url, secretRef={"name": "charts-auth"}, certSecretRef={"name": "charts-ca"}
        ),
    ]


def download(url: str, dest: Path) -> Path:
    with urllib.request.urlopen(url, timeout=10) as resp:
        dest.write_bytes(resp.read())
    return dest


def render(archive: Path, home: Path) -> list[dict[str, Any]]:
    """`helm template` on the artifact: the real Helm must accept it."""
    out = helm("template", "rel", str(archive), home=home).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def configmap_data(docs: list[dict[str, Any]], name: str = "rel-cm") -> dict[str, str]:
    return next(d["data"] for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == name)


def chart_tgz(path: Path, entries: list[tarfile.TarInfo], payload: bytes = b"") -> Path:
    with tarfile.open(path, mode="w:gz") as tar:
        for info in entries:
            if info.isreg():
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))
            else:
                tar.addfile(info)
    return path


def hand_index(repo: ChartRepo, charts: dict[str, tuple[str, str | None]]) -> None:
    """An index the test writes itself (for charts `helm repo index` would not index)."""
    entries = {
        name: [
            {
                "apiVersion": "v2",
                "name": name,
                "version": "1.0.0",
                "urls": [f"{repo.url}/{file}"],
                **({"digest": digest} if digest else {}),
            }
        ]
        for name, (file, digest) in charts.items()
    }
    (repo.dir / "index.yaml").write_text(yaml.safe_dump({"apiVersion": "v1", "entries": entries}))


def test_http_repository_and_chart(chart_repo, chart_server, source_controller, kubectl, namespace, tmp_path):  # type: ignore[no-untyped-def]
    chart_repo.publish("app", "1.0.0")
    controller = source_controller()
    apply(
        kubectl,
        namespace,
        *served_repository(chart_server, chart_repo),
        helm_chart("app", "app", "charts"),
    )

    index = (chart_repo.dir / "index.yaml").read_bytes()
    digest = hashlib.sha256(index).hexdigest()
    repo = wait_ready(kubectl, namespace, "charts", f"sha256:{digest}", kind=REPO)
    artifact = repo["status"]["artifact"]
    assert artifact["path"] == f"helmrepository/{namespace}/charts/index-{digest}.yaml"
    assert artifact["digest"] == f"sha256:{digest}"
    assert repo["status"]["url"] == controller.artifact_url(f"helmrepository/{namespace}/charts/index.yaml")
    assert condition(repo, "Ready")["message"] == f"stored artifact: revision 'sha256:{digest}'"  # type: ignore[index]

    chart = wait_ready(kubectl, namespace, "app", "1.0.0", kind=CHART)
    ready = condition(chart, "Ready")
    assert ready and ready["reason"] == "ChartPullSucceeded"
    assert ready["message"] == "pulled 'app' chart with version '1.0.0'"
    chart_artifact = chart["status"]["artifact"]
    assert chart_artifact["path"] == f"helmchart/{namespace}/app/app-1.0.0.tgz"
    assert chart["status"]["observedChartName"] == "app"
    assert chart["status"]["observedSourceArtifactRevision"] == f"sha256:{digest}"
    archive = download(chart_artifact["url"], tmp_path / "app.tgz")
    # Pulled as-is: the artifact is the archive the repository serves.
    assert archive.read_bytes() == (chart_repo.dir / "app-1.0.0.tgz").read_bytes()
    assert configmap_data(render(archive, tmp_path / "h")) == {"color": "blue", "version": "1.0.0"}

    # A no-op reconcile is one conditional GET answered 304: nothing parsed, nothing written.
    before = len(chart_repo.requests())
    token = request_reconcile(kubectl, namespace, "charts", kind=REPO)
    wait_handled(kubectl, namespace, "charts", token, kind=REPO)
    assert chart_repo.requests()[before:] == [("GET", f"/{namespace}/index.yaml", 304)]

    # A new version in the index moves the HelmChart (the new index artifact triggers it).
    chart_repo.publish("app", "1.1.0", values="color: green\n")
    request_reconcile(kubectl, namespace, "charts", kind=REPO)
    chart = wait_ready(kubectl, namespace, "app", "1.1.0", kind=CHART)
    archive = download(chart["status"]["artifact"]["url"], tmp_path / "app-1.1.0.tgz")
    assert configmap_data(render(archive, tmp_path / "h")) == {"color": "green", "version": "1.1.0"}

    # An exact version wins; a range picks the highest in it.
    apply(
        kubectl,
        namespace,
        helm_chart("pinned", "app", "charts", version="1.0.0"),
        helm_chart("ranged", "app", "charts", version="<1.1.0"),
    )
    wait_ready(kubectl, namespace, "pinned", "1.0.0", kind=CHART)
    wait_ready(kubectl, namespace, "ranged", "1.0.0", kind=CHART)


def test_values_files_packaged(chart_repo, chart_server, source_controller, kubectl, namespace, tmp_path):  # type: ignore[no-untyped-def]
    src = write_chart(tmp_path / "src", "app", "2.0.0", values="color: blue\nsize: s\n")
    (src / "values-prod.yaml").write_text("color: red\n")
    chart_repo.package(src)
    source_controller()
    apply(
        kubectl,
        namespace,
        *served_repository(chart_server, chart_repo),
        helm_chart(
            "app",
            "app",
            "charts",
            valuesFiles=["values.yaml", "values-prod.yaml", "missing.yaml"],
            ignoreMissingValuesFiles=True,
        ),
    )
    chart = wait_ready(kubectl, namespace, "app", "2.0.0+1", kind=CHART)
    assert condition(chart, "Ready")["reason"] == "ChartPackageSucceeded"  # type: ignore[index]
    assert chart["status"]["observedValuesFiles"] == ["values.yaml", "values-prod.yaml"]
    assert chart["status"]["artifact"]["path"] == f"helmchart/{namespace}/app/app-2.0.0+1.tgz"
    archive = download(chart["status"]["artifact"]["url"], tmp_path / "app.tgz")
    data = configmap_data(render(archive, tmp_path / "h"))
    assert data == {"color": "red", "version": "2.0.0+1"}

    # Without ignoreMissingValuesFiles a missing file is an error on the object.
    apply(kubectl, namespace, helm_chart("strict", "app", "charts", valuesFiles=["missing.yaml"]))
    wait_failing(
        kubectl, namespace, "strict", contains="no values file found at path 'missing.yaml'", kind=CHART
    )


def test_bad_inputs_get_their_messages(
    chart_repo, chart_server, source_controller, kubectl, namespace, tmp_path
):  # type: ignore[no-untyped-def]
    chart_repo.publish("app", "1.0.0")
    source_controller("--helm-index-max-size=20000")
    apply(
        kubectl,
        namespace,
        *served_repository(chart_server, chart_repo),
        secret("wrong", {"username": USER, "password": "nope"}),
        secret("half", {"username": USER}),
        helm_repository("half", chart_repo.url, secretRef={"name": "half"}),
        helm_repository(
            "wrong-password", chart_repo.url, secretRef={"name": "wrong"}, certSecretRef={"name": "charts-ca"}
        ),
        helm_chart("no-version", "app", "charts", version=">=5.0.0"),
        helm_chart("no-chart", "nope", "charts"),
        helm_chart("bucket", "app", "b", kind="Bucket"),
    )
    wait_failing(kubectl, namespace, "wrong-password", contains="401", kind=REPO)
    wait_failing(kubectl, namespace, "half", contains="required fields username and password", kind=REPO)
    wait_failing(
        kubectl,
        namespace,
        "no-version",
        contains="no 'app' chart with version matching '>=5.0.0'",
        kind=CHART,
    )
    wait_failing(kubectl, namespace, "no-chart", contains="no chart name found", kind=CHART)
    wait_failing(kubectl, namespace, "bucket", contains="'Bucket'", kind=CHART)

    # Hostile and broken archives behind an index the test writes.
    bad = ChartRepo(chart_server, f"{namespace}-bad", chart_repo.home)
    bad.dir.mkdir(parents=True)
    chart_yaml = tarfile.TarInfo("evil/Chart.yaml")
    chart_yaml.type = tarfile.REGTYPE
    escape = tarfile.TarInfo("evil/../../escape.txt")
    link = tarfile.TarInfo("evil/templates/link.yaml")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    payload = b"apiVersion: v2\nname: evil\nversion: 1.0.0\n"
    chart_tgz(bad.dir / "dotdot-1.0.0.tgz", [chart_yaml, escape], payload)
    chart_tgz(bad.dir / "symlink-1.0.0.tgz", [chart_yaml, link], payload)
    (bad.dir / "corrupt-1.0.0.tgz").write_bytes(b"\x1f\x8b\x08\x00 this is no archive")
    good = (chart_repo.dir / "app-1.0.0.tgz").read_bytes()
    (bad.dir / "tampered-1.0.0.tgz").write_bytes(good)
    hand_index(
        bad,
        {
            "dotdot": ("dotdot-1.0.0.tgz", None),
            "symlink": ("symlink-1.0.0.tgz", None),
            "corrupt": ("corrupt-1.0.0.tgz", None),
            "tampered": ("tampered-1.0.0.tgz", "0" * 64),
        },
    )
    huge = ChartRepo(chart_server, f"{namespace}-huge", chart_repo.home)
    huge.dir.mkdir(parents=True)
    (huge.dir / "index.yaml").write_text("apiVersion: v1\nentries: {}\n# " + "x" * 30000 + "\n")
    apply(
        kubectl,
        namespace,
        helm_repository(
            "bad", bad.url, secretRef={"name": "charts-auth"}, certSecretRef={"name": "charts-ca"}
        ),
        helm_repository(
            "huge", huge.url, secretRef={"name": "charts-auth"}, certSecretRef={"name": "charts-ca"}
        ),
        *(helm_chart(n, n, "bad") for n in ("dotdot", "symlink", "corrupt", "tampered")),
    )
    wait_failing(kubectl, namespace, "huge", contains="exceeds the maximum", kind=REPO)
    wait_failing(kubectl, namespace, "dotdot", contains="illegal path traversal in chart archive", kind=CHART)
    wait_failing(kubectl, namespace, "symlink", contains="illegal link in chart archive", kind=CHART)
    wait_failing(kubectl, namespace, "corrupt", contains="corrupt chart archive", kind=CHART)
    obj = wait_failing(kubectl, namespace, "tampered", contains="digest mismatch", kind=CHART)
    assert condition(obj, "BuildFailed")["reason"] == "ChartPullError"  # type: ignore[index]
    # Nothing of the refused archives reached the storage.
    assert not list((tmp_path / "storage").rglob("*.txt"))


def test_oci_repository_chart(
    chart_repo, oci_registry, git_server, source_controller, kubectl, namespace, tmp_path
):  # type: ignore[no-untyped-def]
    registry = oci_registry.auth  # TLS and basic auth
    home = chart_repo.home
    ca = registry.tls.ca_file
    archive = (
        helm(
            "package",
            str(write_chart(tmp_path / "src", "ociapp", "0.3.0")),
            "--destination",
            str(tmp_path),
            home=home,
        )
        .stdout.strip()
        .rsplit(": ", 1)[-1]
    )
    helm(
        "registry",
        "login",
        registry.host,
        "-u",
        REGISTRY_USER,
        "-p",
        REGISTRY_PASSWORD,
        "--ca-file",
        str(ca),
        home=home,
    )
    helm("push", archive, f"oci://{registry.host}/{namespace}", "--ca-file", str(ca), home=home)
    source_controller()
    apply(
        kubectl,
        namespace,
        secret("regcred", {".dockerconfigjson": registry.docker_config()}, "kubernetes.io/dockerconfigjson"),
        secret("reg-ca", {"ca.crt": Path(ca).read_bytes()}),
        helm_repository(
            "oci",
            f"oci://{registry.host}/{namespace}",
            type="oci",
            secretRef={"name": "regcred"},
            certSecretRef={"name": "reg-ca"},
        ),
        helm_chart("ociapp", "ociapp", "oci", version="0.x"),
    )
    repo = wait_for(kubectl, namespace, "oci", lambda o: bool(condition(o, "Ready")), kind=REPO)
    assert "artifact" not in repo.get("status", {})
    chart = wait_ready(kubectl, namespace, "ociapp", "0.3.0", kind=CHART)
    assert chart["status"]["artifact"]["path"] == f"helmchart/{namespace}/ociapp/ociapp-0.3.0.tgz"
    pulled = download(chart["status"]["artifact"]["url"], tmp_path / "pulled.tgz")
    assert configmap_data(render(pulled, tmp_path / "h"))["version"] == "0.3.0"

    apply(
        kubectl,
        namespace,
        helm_repository("cloud", f"oci://{registry.host}/{namespace}/cloud", type="oci", provider="aws"),
    )
    wait_failing(kubectl, namespace, "cloud", contains="provider 'aws' is not supported", kind=REPO)

    # A Git chart's oci:// dependency comes through the OCI HelmRepository with that URL.
    umbrella = write_chart(
        tmp_path / "git",
        "umbrella",
        "1.0.0",
        templates={
            "u.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-umbrella\n"
        },
        chart_extra=f"dependencies:\n- name: ociapp\n  version: '~0.3'\n  repository: oci://{registry.host}/{namespace}\n",
    )
    files = {f"umbrella/{p.relative_to(umbrella)}": p.read_text() for p in umbrella.rglob("*") if p.is_file()}
    git = git_server.create_repo(f"helm-oci-{namespace}", files)
    apply(
        kubectl,
        namespace,
        {
            "apiVersion": API,
            "kind": "GitRepository",
            "metadata": {"name": "src"},
            "spec": {"url": git.public_http_url, "interval": "10m", "ref": {"branch": "main"}},
        },
        helm_chart("umbrella", "umbrella", "src", kind="GitRepository"),
    )
    chart = wait_ready(kubectl, namespace, "umbrella", "1.0.0", kind=CHART, timeout=90)
    docs = render(download(chart["status"]["artifact"]["url"], tmp_path / "umbrella.tgz"), tmp_path / "h")
    names = sorted(d["metadata"]["name"] for d in docs if d["kind"] == "ConfigMap")
    assert names == ["rel-cm", "rel-umbrella"]
    assert configmap_data(docs)["version"] == "0.3.0"  # the dependency, pulled from the registry


def test_git_chart_with_repository_dependency(
    chart_repo, chart_server, git_server, source_controller, kubectl, namespace, tmp_path
):  # type: ignore[no-untyped-def]
    chart_repo.publish(
        "lib",
        "1.2.0",
        templates={
            "lib.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-lib\n"
            "data:\n  from: lib\n",
        },
    )
    umbrella = write_chart(
        tmp_path / "git",
        "umbrella",
        "0.1.0",
        values="color: purple\n",
        chart_extra=(f"dependencies:\n- name: lib\n  version: '~1.2'\n  repository: {chart_repo.url}\n"),
    )
    files = {
        f"charts/umbrella/{p.relative_to(umbrella)}": p.read_text()
        for p in umbrella.rglob("*")
        if p.is_file()
    }
    files["charts/umbrella/values-prod.yaml"] = "color: orange\n"
    # A dependency whose repository no HelmRepository names is read as Flux reads it: no credentials.
    files["charts/orphan/Chart.yaml"] = (
        f"apiVersion: v2\nname: orphan\nversion: 0.0.1\ndependencies:\n"
        f"- name: lib\n  version: '*'\n  repository: {chart_repo.url}-elsewhere\n"
    )
    git = git_server.create_repo(f"helm-{namespace}", files)
    source_controller()
    apply(
        kubectl,
        namespace,
        *served_repository(chart_server, chart_repo),
        {
            "apiVersion": API,
            "kind": "GitRepository",
            "metadata": {"name": "src"},
            "spec": {
                "url": git.http_url,
                "interval": "10m",
                "ref": {"branch": "main"},
                "secretRef": {"name": "git-auth"},
            },
        },
        secret("git-auth", {"username": git_server.user, "password": git_server.password}),
        helm_chart("umbrella", "./charts/umbrella", "src", kind="GitRepository"),
        helm_chart("orphan", "charts/orphan", "src", kind="GitRepository"),
        helm_chart(
            "byrev",
            "charts/umbrella",
            "src",
            kind="GitRepository",
            reconcileStrategy="Revision",
            valuesFiles=["charts/umbrella/values-prod.yaml"],
        ),
    )
    chart = wait_ready(kubectl, namespace, "umbrella", "0.1.0", kind=CHART, timeout=90)
    ready = condition(chart, "Ready")
    assert ready and ready["reason"] == "ChartPackageSucceeded"
    assert ready["message"] == "packaged 'umbrella' chart with version '0.1.0'"
    archive = download(chart["status"]["artifact"]["url"], tmp_path / "umbrella.tgz")
    docs = render(archive, tmp_path / "h")
    assert configmap_data(docs)["color"] == "purple"
    assert configmap_data(docs, "rel-lib") == {"from": "lib"}

    orphan = wait_failing(
        kubectl, namespace, "orphan", contains="no HelmRepository with this URL", kind=CHART
    )
    assert condition(orphan, "BuildFailed")["reason"] == "DependencyBuildError"  # type: ignore[index]

    commit = git.head()
    byrev = wait_ready(kubectl, namespace, "byrev", f"0.1.0+{commit[:12]}.1", kind=CHART, timeout=90)
    docs = render(download(byrev["status"]["artifact"]["url"], tmp_path / "byrev.tgz"), tmp_path / "h")
    assert configmap_data(docs)["color"] == "orange"

    # A new commit: the Revision strategy moves, the ChartVersion strategy keeps its artifact.
    new = git.commit({"README.md": "docs\n"})
    request_reconcile(kubectl, namespace, "src", kind="gitrepository")
    wait_ready(kubectl, namespace, "byrev", f"0.1.0+{new[:12]}.1", kind=CHART, timeout=90)
    assert (
        json.loads(kubectl("get", CHART, "umbrella", "-n", namespace, "-o", "json").stdout)["status"][
            "artifact"
        ]["revision"]
        == "0.1.0"
    )


def test_tide_cli_drives_helm_sources(
    chart_repo, chart_server, oci_registry, source_controller, tide, kubectl, namespace
):  # type: ignore[no-untyped-def]
    chart_repo.publish("app", "1.0.0")
    source_controller()
    apply(
        kubectl,
        namespace,
        *served_repository(chart_server, chart_repo),
    )
    ns = ["-n", namespace]
    res = tide(
        *ns,
        "create",
        "source",
        "chart",
        "app",
        "--source",
        "HelmRepository/charts",
        "--chart",
        "app",
        "--chart-version",
        "1.x",
    )
    assert "pulled 'app' chart with version '1.0.0'" in res.stdout + res.stderr
    [row] = tide(*ns, "get", "sources", "chart").stdout.splitlines()[1:]
    assert row.split()[:4] == ["app", "1.0.0", "False", "True"]

    chart_repo.publish("app", "1.1.0")
    tide(*ns, "reconcile", "source", "helm", "charts")
    wait_ready(kubectl, namespace, "app", "1.1.0", kind=CHART)
    tide(*ns, "suspend", "source", "chart", "app")
    assert tide(*ns, "get", "sources", "chart").stdout.splitlines()[1].split()[2] == "True"
    tide(*ns, "resume", "source", "chart", "app")
    assert tide(*ns, "get", "sources", "chart").stdout.splitlines()[1].split()[2] == "False"

    # An oci:// URL makes an OCI HelmRepository: no artifact, Ready.
    url = f"oci://{oci_registry.plain.host}/{namespace}"
    res = tide(*ns, "create", "source", "helm", "oci", "--url", url)
    assert "Helm repository is ready" in res.stdout + res.stderr
    assert get_obj_spec(kubectl, namespace, "oci")["type"] == "oci"


def get_obj_spec(kubectl, namespace: str, name: str) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    return dict(json.loads(kubectl("get", REPO, name, "-n", namespace, "-o", "json").stdout)["spec"])
