"""A real Kubernetes control plane on loopback: etcd, kube-apiserver, kube-controller-manager,
kube-scheduler, and kwok for one fake node, from the binaries in .tide/bin (tools/build.sh).

    python -m e2e.cluster up | down | status

`up` returns once the API is ready and the node is registered, with the processes running in the
background; `down` stops them and removes the state. The test session uses `ControlPlane` directly.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import ctypes
import datetime
import ipaddress
import json
import os
import random
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / ".tide" / "bin"
STATE = ROOT / ".tide" / "cluster"
KUBECONFIG = ROOT / ".tide" / "kubeconfig"
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")
NODE_NAME = "kwok-node-0"
# As kind's: a /24 runs out of ClusterIPs at 254 Services (Flux's MTTP with N=500 creates 500).
SERVICE_CIDR = "10.96.0.0/16"
SERVICE_CIDR_FIRST_IP = "10.96.0.1"


# Ports handed to servers come from below the kernel's ephemeral range (32768-60999 by default):
# a port the kernel picked for bind(0) may be taken by an outbound connection's local end before
# the server that was told to use it binds it. Each pytest-xdist worker takes its own slice, and
# each process starts at a random place in it, so two test processes rarely try the same port.
PORT_RANGE = range(15000, 32000)
_PORT_SLICES = 8


def _port_slice() -> range:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    index = int(worker) % _PORT_SLICES if worker.isdigit() else 0
    size = len(PORT_RANGE) // _PORT_SLICES
    start = PORT_RANGE.start + index * size
    return range(start, start + size)


_next_port: list[int] = []


def free_port() -> int:
    """A loopback port nothing listens on, not handed out before by this process (until the
    slice wraps around)."""
    ports = _port_slice()
    if not _next_port:
        _next_port.append(random.randrange(len(ports)))
    for _ in range(len(ports)):
        port = ports[_next_port[0] % len(ports)]
        _next_port[0] += 1
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free loopback port in {ports}")


def wait_for_port(
    port: int, proc: subprocess.Popen[bytes], what: str, log: Callable[[], str] = str, timeout: float = 15
) -> None:
    """Return once something accepts connections on the loopback port; fail if proc exits first
    (with log() in the message) or nothing listens within the timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(f"{what} exited at start:\n{log()}") from None
            time.sleep(0.05)
    raise RuntimeError(f"{what} did not start")


def _die_with_parent() -> None:
    """Children of a test run get SIGTERM when the run dies, however it dies."""
    os.setpgrp()
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class Certificates:
    """A throw-away CA and the certificates the components (and test servers) present."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory

    def _write_key(self, name: str, key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> None:
        (self.dir / f"{name}.key").write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.TraditionalOpenSSL,
                serialization.NoEncryption(),
            )
        )

    def create_ca(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self._now = datetime.datetime.now(datetime.UTC) - datetime.timedelta(hours=1)
        self._ca_key = ec.generate_private_key(ec.SECP256R1())
        self._ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tide-local-ca")])
        ca = (
            x509.CertificateBuilder()
            .subject_name(self._ca_name)
            .issuer_name(self._ca_name)
            .public_key(self._ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(self._now)
            .not_valid_after(self._now + datetime.timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    key_cert_sign=True,
                    crl_sign=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(self._ca_key, hashes.SHA256())
        )
        (self.dir / "ca.crt").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
        self._write_key("ca", self._ca_key)

    def issue(self, name: str, cn: str, orgs: tuple[str, ...] = (), dns: tuple[str, ...] = ()) -> None:
        """Writes <name>.crt and <name>.key, good for client and server auth; `dns` names make it a
        server certificate for them and 127.0.0.1."""
        key = ec.generate_private_key(ec.SECP256R1())
        attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
        attrs += [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs]
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name(attrs))
            .issuer_name(self._ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(self._now)
            .not_valid_after(self._now + datetime.timedelta(days=365))
            .add_extension(
                x509.ExtendedKeyUsage(
                    [x509.oid.ExtendedKeyUsageOID.SERVER_AUTH, x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
        )
        if dns:
            names: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
            names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ("127.0.0.1", SERVICE_CIDR_FIRST_IP)]
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        cert = builder.sign(self._ca_key, hashes.SHA256())
        (self.dir / f"{name}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        self._write_key(name, key)

    def generate(self) -> None:
        """The CA and every certificate and key the control plane's components use."""
        self.create_ca()
        issue = self.issue
        issue("apiserver", "kube-apiserver", dns=(
            "localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
        ))  # fmt: skip
        issue("admin", "tide-admin", ("system:masters",))
        issue("controller-manager", "system:kube-controller-manager", ("system:masters",))
        issue("scheduler", "system:kube-scheduler")
        issue("kwok", "kwok-controller", ("system:masters",))
        self._write_key("sa", rsa.generate_private_key(public_exponent=65537, key_size=2048))
        sa_pub = serialization.load_pem_private_key((self.dir / "sa.key").read_bytes(), None).public_key()
        (self.dir / "sa.pub").write_bytes(
            sa_pub.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        )

    def kubeconfig(self, user: str, server: str, embed: bool = False) -> str:
        def ref(kind: str, path: Path) -> dict[str, str]:
            if embed:
                return {f"{kind}-data": base64.b64encode(path.read_bytes()).decode()}
            return {kind: str(path)}

        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "tide",
                    "cluster": {"server": server, **ref("certificate-authority", self.dir / "ca.crt")},
                }
            ],
            "users": [
                {
                    "name": user,
                    "user": {
                        **ref("client-certificate", self.dir / f"{user}.crt"),
                        **ref("client-key", self.dir / f"{user}.key"),
                    },
                }
            ],
            "contexts": [
                {"name": "tide", "context": {"cluster": "tide", "user": user, "namespace": "default"}}
            ],
            "current-context": "tide",
        }
        return json.dumps(config, indent=2)


@dataclass
class ControlPlane:
    state: Path = STATE
    kubeconfig: Path = KUBECONFIG
    bin: Path = BIN
    ports: dict[str, int] = field(default_factory=dict)
    tie_to_parent: bool = False
    started_here: bool = False

    @classmethod
    def private(cls, workdir: Path) -> ControlPlane:
        """A started plane of a benchmark's own under workdir, which dies with this process."""
        plane = cls(state=workdir / "cluster", kubeconfig=workdir / "kubeconfig", tie_to_parent=True)
        plane.up()
        return plane

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.ports['apiserver']}"

    # -- processes -------------------------------------------------------------------------------
    def _pidfile(self, name: str) -> Path:
        return self.state / f"{name}.pid"

    def _spawn(self, name: str, args: list[str]) -> None:
        binary = self.bin / name
        if not binary.exists():
            raise RuntimeError(f"{binary} is missing: run `tools/build.sh` (or `make tools`) first")
        log = open(self.state / f"{name}.log", "ab")
        proc = subprocess.Popen(
            [str(binary), *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=_die_with_parent if self.tie_to_parent else os.setpgrp,
            cwd=self.state,
        )
        self._pidfile(name).write_text(str(proc.pid))

    def _pid(self, name: str) -> int | None:
        """The component's pid while it runs; a zombie left for another parent to reap counts as gone."""
        try:
            pid = int(self._pidfile(name).read_text())
            stat = Path(f"/proc/{pid}/stat").read_text()
        except (OSError, ValueError):
            return None
        return None if stat.rpartition(")")[2].split()[0] in ("Z", "X") else pid

    def _stop(self, name: str, timeout: float = 10, sig: int = signal.SIGTERM) -> None:
        pid = self._pid(name)
        if pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self._gone(name, pid):
            time.sleep(0.05)
        if not self._gone(name, pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            while time.monotonic() < deadline + 10 and not self._gone(name, pid):
                time.sleep(0.05)
        self._pidfile(name).unlink(missing_ok=True)

    def _gone(self, name: str, pid: int) -> bool:
        """Our child is gone once reaped: a killed multi-threaded leader shows as a zombie while
        its other threads still exit and hold its sockets (a restart on its port then fails)."""
        try:
            return os.waitpid(pid, os.WNOHANG)[0] == pid
        except ChildProcessError:  # started by another process (`make cluster-up`), or reaped
            return self._pid(name) is None

    def running(self) -> bool:
        if not (self.state / "ports.json").exists():
            return False
        self.ports = json.loads((self.state / "ports.json").read_text())
        return all(self._pid(name) is not None for name in COMPONENTS) and self._api_ready(timeout=2)

    # -- lifecycle -------------------------------------------------------------------------------
    def up(self, timeout: float = 120) -> float:
        """Starts every component and waits for a ready API and node; returns the seconds taken."""
        self.down()
        start = time.monotonic()
        self.state.mkdir(parents=True, exist_ok=True)
        certs = Certificates(self.state / "pki")
        certs.generate()
        self.ports = {
            name: free_port() for name in ("etcd", "etcd-peer", "apiserver", "kcm", "scheduler", "kwok")
        }
        (self.state / "ports.json").write_text(json.dumps(self.ports))
        for user in ("controller-manager", "scheduler", "kwok"):
            (self.state / f"{user}.kubeconfig").write_text(certs.kubeconfig(user, self.server))
        self.kubeconfig.parent.mkdir(parents=True, exist_ok=True)
        self.kubeconfig.write_text(certs.kubeconfig("admin", self.server, embed=True))
        self.started_here = True
        self._start_etcd()
        self._start_apiserver()
        self._wait(self._api_ready, timeout - (time.monotonic() - start), "kube-apiserver /readyz")
        self._start_controllers()
        self._create_node()
        self._wait(self._node_ready, timeout - (time.monotonic() - start), f"node {NODE_NAME} Ready")
        return time.monotonic() - start

    def down(self) -> None:
        # The state is thrown away, so there is nothing to shut down gracefully for.
        for name in reversed(COMPONENTS):
            if self.state.exists():
                self._stop(name, sig=signal.SIGKILL)
        if self.state.exists():
            shutil.rmtree(self.state, ignore_errors=True)
        self.kubeconfig.unlink(missing_ok=True)

    def pause(self, name: str) -> None:
        """SIGSTOP a component (it misses its heartbeats, as under heavy load) until `resume`."""
        pid = self._pid(name)
        assert pid is not None, f"{name} is not running"
        os.kill(pid, signal.SIGSTOP)

    def resume(self, name: str) -> None:
        pid = self._pid(name)
        assert pid is not None, f"{name} is not running"
        os.kill(pid, signal.SIGCONT)

    def restart_apiserver(self, sig: int = signal.SIGTERM) -> None:
        """Stops kube-apiserver (SIGKILL: a crash) and starts it again on the same port."""
        self.stop_apiserver(sig)
        self.start_apiserver()

    def stop_apiserver(self, sig: int = signal.SIGTERM) -> None:
        """The API server goes away (its clients see connections refused) until start_apiserver."""
        self._stop("kube-apiserver", sig=sig)

    def start_apiserver(self) -> None:
        self._start_apiserver()
        self._wait(self._api_ready, 60, "kube-apiserver /readyz after restart")

    def restart_etcd(self, sig: int = signal.SIGTERM) -> None:
        """Stops etcd and starts it again on the same ports and data (the API server reconnects)."""
        self._stop("etcd", sig=sig)
        self._start_etcd()
        self._wait(self._api_ready, 60, "kube-apiserver /readyz after an etcd restart")

    def compact_etcd(self) -> int:
        """Compacts etcd at its current revision (etcd's JSON gateway): a watch resumed from any
        older resourceVersion is answered 410 Gone. Returns the revision."""
        base = f"http://127.0.0.1:{self.ports['etcd']}/v3/kv"

        def post(path: str, body: dict) -> dict:  # type: ignore[type-arg]
            req = urllib.request.Request(f"{base}/{path}", data=json.dumps(body).encode(), method="POST")
            with urllib.request.urlopen(req, timeout=10) as resp:
                return json.loads(resp.read())  # type: ignore[no-any-return]

        revision = int(post("range", {"key": base64.b64encode(b"/").decode()})["header"]["revision"])
        post("compaction", {"revision": revision, "physical": True})
        return revision

    def _start_etcd(self) -> None:
        peer = f"http://127.0.0.1:{self.ports['etcd-peer']}"
        client = f"http://127.0.0.1:{self.ports['etcd']}"
        self._spawn(
            "etcd",
            [
                "--name=tide",
                f"--data-dir={self.state / 'etcd'}",
                f"--listen-client-urls={client}",
                f"--advertise-client-urls={client}",
                f"--listen-peer-urls={peer}",
                f"--initial-advertise-peer-urls={peer}",
                f"--initial-cluster=tide={peer}",
                "--unsafe-no-fsync",
                "--log-level=warn",
                "--listen-metrics-urls=",
                "--quota-backend-bytes=4294967296",
            ],
        )

    def _start_apiserver(self) -> None:
        pki = self.state / "pki"
        self._spawn(
            "kube-apiserver",
            [
                f"--etcd-servers=http://127.0.0.1:{self.ports['etcd']}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={self.ports['apiserver']}",
                f"--tls-cert-file={pki / 'apiserver.crt'}",
                f"--tls-private-key-file={pki / 'apiserver.key'}",
                f"--client-ca-file={pki / 'ca.crt'}",
                f"--service-account-key-file={pki / 'sa.pub'}",
                f"--service-account-signing-key-file={pki / 'sa.key'}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                "--api-audiences=https://kubernetes.default.svc.cluster.local",
                "--authorization-mode=Node,RBAC",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--allow-privileged=true",
                "--profiling=false",
                "--v=1",
                # The fake node is Ready the moment kwok sees it: no not-ready taint to wait out.
                "--disable-admission-plugins=TaintNodesByCondition",
                # Loopback cannot be published as the `kubernetes` Service's endpoint.
                "--endpoint-reconciler-type=none",
            ],
        )

    def _start_controllers(self) -> None:
        pki = self.state / "pki"
        self._spawn(
            "kube-controller-manager",
            [
                f"--kubeconfig={self.state / 'controller-manager.kubeconfig'}",
                f"--authentication-kubeconfig={self.state / 'controller-manager.kubeconfig'}",
                f"--authorization-kubeconfig={self.state / 'controller-manager.kubeconfig'}",
                f"--service-account-private-key-file={pki / 'sa.key'}",
                f"--root-ca-file={pki / 'ca.crt'}",
                f"--cluster-signing-cert-file={pki / 'ca.crt'}",
                f"--cluster-signing-key-file={pki / 'ca.key'}",
                "--use-service-account-credentials=false",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                f"--secure-port={self.ports['kcm']}",
                # No node lifecycle controller: kwok heartbeats its fake node only about every 50 s
                # (kube-controller-manager's default grace period), so a little CPU load made the
                # controller mark the node NotReady and every pod on it Ready=False, which kwok never
                # undoes: Deployments stayed unavailable for good. A longer grace period only moves
                # that edge, and kwok stages that restore readiness are more configuration to keep in
                # step with kwok; the node is fake, and there is no kubelet whose silence means
                # anything. (e2e/test_control_plane.py stops kwok past the default grace period.)
                "--controllers=*,-nodeipam,-cloud-node-lifecycle,-service-lb-controller,-route,"
                "-node-lifecycle-controller",
                # Its default client limit (20 requests/s, burst 30) made Deployment status lag
                # 3-5 s behind once a benchmark creates hundreds at once: MTTP then measured
                # kube-controller-manager's throttle, the same for every GitOps controller, not the
                # controllers under test (measured at N=500: status lag 3-5 s at the default, under
                # 1 s at this limit).
                "--kube-api-qps=200",
                "--kube-api-burst=400",
                "--concurrent-deployment-syncs=10",
                "--concurrent-replicaset-syncs=10",
                "--concurrent-namespace-syncs=10",
                "--concurrent-gc-syncs=20",
                "--node-monitor-period=1s",
                "--v=1",
            ],
        )
        self._spawn(
            "kube-scheduler",
            [
                f"--kubeconfig={self.state / 'scheduler.kubeconfig'}",
                f"--authentication-kubeconfig={self.state / 'scheduler.kubeconfig'}",
                f"--authorization-kubeconfig={self.state / 'scheduler.kubeconfig'}",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                f"--secure-port={self.ports['scheduler']}",
                "--v=1",
            ],
        )
        self._spawn(
            "kwok",
            [
                f"--kubeconfig={self.state / 'kwok.kubeconfig'}",
                "--manage-all-nodes=false",
                "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
                "--disregard-status-with-annotation-selector=kwok.x-k8s.io/status=custom",
                "--cidr=10.244.0.0/16",
                "--node-ip=10.0.0.2",
                f"--node-port={self.ports['kwok']}",
                f"--server-address=127.0.0.1:{self.ports['kwok']}",
            ],
        )

    def _create_node(self) -> None:
        node = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": NODE_NAME,
                "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
                "labels": {
                    "kubernetes.io/hostname": NODE_NAME,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                    "type": "kwok",
                },
            },
            "status": {
                "allocatable": {"cpu": "64", "memory": "256Gi", "pods": "1000"},
                "capacity": {"cpu": "64", "memory": "256Gi", "pods": "1000"},
            },
        }
        self.request("POST", "/api/v1/nodes", node)

    # -- API access without the Python client, so the harness needs nothing but the stdlib ------
    def _ssl(self) -> ssl.SSLContext:
        pki = self.state / "pki"
        ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        ctx.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
        return ctx

    def request(self, method: str, path: str, body: dict | None = None, timeout: float = 5) -> dict:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.server + path, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(req, context=self._ssl(), timeout=timeout) as resp:
            raw = resp.read()
        try:
            return json.loads(raw) if raw else {}
        except json.JSONDecodeError:
            return {"raw": raw.decode(errors="replace")}

    def _api_ready(self, timeout: float = 2) -> bool:
        try:
            return self.request("GET", "/readyz", timeout=timeout).get("raw", "") == "ok"
        except OSError:
            return False

    def _node_ready(self) -> bool:
        try:
            node = self.request("GET", f"/api/v1/nodes/{NODE_NAME}")
            sa = self.request("GET", "/api/v1/namespaces/default/serviceaccounts/default")
        except OSError:
            return False
        ready = any(
            c.get("type") == "Ready" and c.get("status") == "True"
            for c in node.get("status", {}).get("conditions", [])
        )
        schedulable = not node.get("spec", {}).get("taints")
        return ready and schedulable and sa.get("metadata", {}).get("name") == "default"

    def _wait(self, check, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():
                return
            for name in COMPONENTS:
                if self._pidfile(name).exists() and self._pid(name) is None:
                    text = (self.state / f"{name}.log").read_text(errors="replace")
                    # Without kube-apiserver's echo of its flags, which would fill the excerpt.
                    log = "\n".join(ln for ln in text.splitlines() if "flags.go:" not in ln)[-3000:]
                    raise RuntimeError(f"{name} exited while waiting for {what}; its log ends:\n{log}")
            time.sleep(0.1)
        raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}; logs in {self.state}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m e2e.cluster", description=__doc__)
    parser.add_argument("command", choices=["up", "down", "status"])
    args = parser.parse_args(argv)
    plane = ControlPlane()
    if args.command == "up":
        took = plane.up()
        print(f"cluster: ready in {took:.1f}s at {plane.server}; KUBECONFIG={plane.kubeconfig}")
    elif args.command == "down":
        plane.down()
        print("cluster: stopped, state removed")
    else:
        ok = plane.running()
        print(f"cluster: {'running at ' + plane.server if ok else 'not running'}")
        return 0 if ok else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
