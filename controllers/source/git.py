"""Git transport with dulwich: credentials, ref listing, shallow fetch and checkout.

Everything here blocks; the reconciler runs it in a thread. A `Remote` is one repository
URL with its credentials; it counts the network round trips it makes.
"""

from __future__ import annotations

import os
import re
import shutil
import ssl
import stat
import subprocess
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import urllib3
from dulwich.client import (
    GitClient,
    HTTPProxyUnauthorized,
    HTTPUnauthorized,
    SSHGitClient,
    SSHVendor,
    SubprocessWrapper,
    Urllib3HttpGitClient,
)
from dulwich.config import ConfigFile, parse_submodules
from dulwich.errors import GitProtocolError, HangupException, NotGitRepository
from dulwich.objects import Blob, Commit, Tag, Tree
from dulwich.repo import BaseRepo, MemoryRepo

from tide.controllers.source.conditions import AUTHENTICATION_FAILED, GIT_OPERATION_FAILED
from tide.controllers.source.proxy import Proxy
from tide.controllers.source.refs import Target
from tide.shared.artifact.extract import check_entries


class GitError(Exception):
    """A Git operation failed; reason is the Flux condition reason."""

    reason = GIT_OPERATION_FAILED


class AuthenticationError(GitError):
    reason = AUTHENTICATION_FAILED


class InvalidAuth(GitError):
    reason = AUTHENTICATION_FAILED


class SubmoduleDepthExceeded(GitError):
    """Submodules nest deeper than MAX_SUBMODULE_DEPTH (a repository can name itself)."""


class InvalidURL(GitError):
    """A URL Tide will not fetch: a scheme other than http(s)/ssh, or an SSH host or user that
    OpenSSH would read as an option."""

    reason = "URLInvalid"


@dataclass
class GitAuth:
    """Credentials from the GitRepository's secretRef (Flux's key names)."""

    username: str | None = None
    password: str | None = None
    bearer_token: str | None = None
    ca_pem: bytes | None = None
    cert_pem: bytes | None = None
    key_pem: bytes | None = None
    identity: bytes | None = None
    known_hosts: bytes | None = None
    proxy: Proxy | None = None

    @classmethod
    def from_secret(cls, data: Mapping[str, bytes], scheme: str) -> GitAuth:
        def text(key: str) -> str | None:
            value = data.get(key)
            return value.decode() if value is not None else None

        auth = cls(
            ca_pem=data.get("ca.crt") or data.get("caFile"),
            cert_pem=data.get("tls.crt") or data.get("certFile"),
            key_pem=data.get("tls.key") or data.get("keyFile"),
        )
        if scheme == "ssh":
            auth.identity = data.get("identity")
            auth.known_hosts = data.get("known_hosts")
            auth.password = text("password")
            auth.username = text("username")
            if not auth.identity and not auth.password:
                raise InvalidAuth("invalid 'ssh' auth option: 'identity' is required")
            if not auth.known_hosts:
                raise InvalidAuth("invalid 'ssh' auth option: 'known_hosts' is required")
        else:
            auth.username = text("username")
            auth.password = text("password")
            auth.bearer_token = text("bearerToken")
            if auth.bearer_token and auth.username:
                raise InvalidAuth("invalid auth options: 'bearerToken' and 'username' are mutually exclusive")
            if auth.username is not None and not auth.password:
                raise InvalidAuth("invalid 'basic' auth option: 'password' is required")
            if bool(auth.cert_pem) != bool(auth.key_pem):
                raise InvalidAuth("invalid 'tls' auth option: 'tls.crt' and 'tls.key' must be given together")
        return auth


@dataclass
class Checkout:
    commit: str
    message: str
    tag_object: Tag | None
    commit_object: Commit
    round_trips: int


_HTTP_REFUSAL = re.compile(r"^unexpected http resp 40[13]\b")


def is_http_refusal(message: str) -> bool:
    """Whether dulwich's protocol error is the server refusing the credentials (401/403), by its
    status, not by a "401" anywhere in the text (a port such as 40167 in a connection error)."""
    return bool(_HTTP_REFUSAL.match(message))


def redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password or parts.username:
        host = parts.hostname or ""
        if parts.port:
            host += f":{parts.port}"
        return parts._replace(netloc=host).geturl()
    return parts._replace(query="").geturl()


class _OpenSSHVendor(SSHVendor):
    """Runs OpenSSH's client with only our identity and known_hosts; the host key is checked."""

    def __init__(self, workdir: Path, auth: GitAuth, timeout: float) -> None:
        self.args = [
            "ssh",
            "-x",
            "-F",
            "/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "GlobalKnownHostsFile=/dev/null",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "IdentityAgent=none",
            "-o",
            f"ConnectTimeout={max(1, int(timeout))}",
            "-o",
            "LogLevel=ERROR",
            "-o",
            "ServerAliveInterval=15",
            "-o",
            "UpdateHostKeys=no",
        ]
        known_hosts = workdir / "known_hosts"
        known_hosts.write_bytes(auth.known_hosts or b"")
        self.args += ["-o", f"UserKnownHostsFile={known_hosts}"]
        if auth.identity:
            key = workdir / "identity"
            key.write_bytes(_unencrypted_identity(auth.identity, auth.password))
            key.chmod(0o600)
            self.args += ["-i", str(key)]
        else:
            self.args += ["-o", "PubkeyAuthentication=no"]
        if auth.proxy:
            self.args += ["-o", f"ProxyCommand={_ssh_proxy_command(auth.proxy)}"]

    def run_command(
        self,
        host: str,
        command: bytes | str,
        username: str | None = None,
        port: int | None = None,
        password: str | None = None,
        key_filename: str | None = None,
        ssh_command: str | None = None,
        protocol_version: int | None = None,
    ) -> SubprocessWrapper:
        args = list(self.args)
        if port:
            args += ["-p", str(port)]
        if protocol_version and protocol_version > 0:
            args += ["-o", f"SetEnv GIT_PROTOCOL=version={protocol_version}"]
        # `--` ends the options: nothing after it is read as one, whatever a URL holds.
        args += ["--", ssh_destination(host, username)]
        cmd = command.decode() if isinstance(command, bytes) else command
        proc = subprocess.Popen(
            [*args, cmd], bufsize=0, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        return SubprocessWrapper(proc)


def ssh_destination(host: str, username: str | None) -> str:
    """user@host for OpenSSH; a host or user starting with `-` (an option to ssh, such as
    `-oProxyCommand=...`) or holding a control character is refused, not left to OpenSSH."""
    for what, value in (("host", host), ("username", username or "")):
        if value.startswith("-") or any(ord(c) < 0x20 or c == "\x7f" for c in value):
            raise InvalidURL(f"invalid SSH {what} {value!r}: it must not start with '-'")
    if not host:
        raise InvalidURL("the SSH URL has no host")
    return f"{username}@{host}" if username else host


def _ssh_proxy_command(proxy: Proxy) -> str:
    if shutil.which("nc") is None:
        raise GitError("a proxy for SSH URLs needs OpenBSD netcat ('nc') in the controller image")
    if proxy.username:
        raise GitError("proxy credentials are not supported for SSH URLs")
    parts = urlsplit(proxy.address)
    host, port = parts.hostname or "", parts.port or (1080 if parts.scheme.startswith("socks") else 3128)
    mode = "5" if parts.scheme.startswith("socks") else "connect"
    return f"nc -X {mode} -x {host}:{port} %h %p"


def _unencrypted_identity(identity: bytes, password: str | None) -> bytes:
    """OpenSSH's client cannot take a passphrase non-interactively: decrypt the key here."""
    if b"ENCRYPTED" not in identity and not (b"OPENSSH PRIVATE KEY" in identity and password):
        return identity
    from cryptography.hazmat.primitives import serialization

    pw = password.encode() if password else None
    try:
        if b"OPENSSH PRIVATE KEY" in identity:
            key: Any = serialization.load_ssh_private_key(identity, pw)
        else:
            key = serialization.load_pem_private_key(identity, pw)
    except (ValueError, TypeError) as exc:
        raise InvalidAuth(f"failed to decrypt the SSH identity: {exc}") from exc
    return bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
        )
    )


class Remote:
    """One remote repository with credentials. Use as a context manager (temp files)."""

    def __init__(self, url: str, auth: GitAuth | None = None, timeout: float = 60.0) -> None:
        self.url = url
        self.auth = auth or GitAuth()
        self.timeout = timeout
        self.round_trips = 0
        self._workdir = Path(tempfile.mkdtemp(prefix="tide-git-"))
        self._workdir.chmod(0o700)
        try:
            self.client, self.path = self._client()
        except BaseException:
            shutil.rmtree(self._workdir, ignore_errors=True)
            raise

    def __enter__(self) -> Remote:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        try:
            self.client.close()
        finally:
            shutil.rmtree(self._workdir, ignore_errors=True)

    def _client(self) -> tuple[GitClient, str]:
        parts = urlsplit(self.url)
        if parts.scheme in ("http", "https"):
            return self._http_client(parts.scheme), self.url
        if parts.scheme == "ssh":
            username = parts.username or self.auth.username or "git"
            ssh_destination(parts.hostname or "", username)
            vendor = _OpenSSHVendor(self._workdir, self.auth, self.timeout)
            client = SSHGitClient(
                parts.hostname or "", port=parts.port, username=username, vendor=vendor, thin_packs=False
            )
            original = client._connect

            def counted(*args: Any, **kwargs: Any) -> Any:
                self.round_trips += 1
                return original(*args, **kwargs)

            client._connect = counted  # type: ignore[method-assign]
            return client, parts.path
        raise InvalidURL(f"unsupported URL scheme '{parts.scheme}': expected http, https or ssh")

    def _http_client(self, scheme: str) -> GitClient:
        auth = self.auth
        kwargs: dict[str, Any] = {"timeout": urllib3.Timeout(connect=self.timeout, read=self.timeout)}
        if scheme == "https":
            ctx = ssl.create_default_context()
            if auth.ca_pem:
                try:
                    ctx.load_verify_locations(cadata=auth.ca_pem.decode())
                except (ssl.SSLError, ValueError) as exc:
                    raise InvalidAuth(f"invalid CA certificate in 'ca.crt': {exc}") from exc
            if auth.cert_pem and auth.key_pem:
                cert, key = self._workdir / "tls.crt", self._workdir / "tls.key"
                cert.write_bytes(auth.cert_pem)
                key.write_bytes(auth.key_pem)
                key.chmod(0o600)
                try:
                    ctx.load_cert_chain(str(cert), str(key))
                except (ssl.SSLError, ValueError) as exc:
                    raise InvalidAuth(f"invalid client certificate in 'tls.crt'/'tls.key': {exc}") from exc
            kwargs["ssl_context"] = ctx
        if auth.bearer_token:
            kwargs["headers"] = {"Authorization": f"Bearer {auth.bearer_token}"}
        pool: urllib3.PoolManager
        if auth.proxy:
            headers = None
            if auth.proxy.username:
                headers = urllib3.make_headers(
                    proxy_basic_auth=f"{auth.proxy.username}:{auth.proxy.password or ''}"
                )
            if auth.proxy.address.startswith("socks"):
                from urllib3.contrib.socks import SOCKSProxyManager

                pool = SOCKSProxyManager(
                    auth.proxy.address, username=auth.proxy.username, password=auth.proxy.password, **kwargs
                )
            else:
                pool = urllib3.ProxyManager(auth.proxy.address, proxy_headers=headers, **kwargs)
        else:
            pool = urllib3.PoolManager(**kwargs)
        client = Urllib3HttpGitClient(
            self.url,
            pool_manager=pool,
            username=auth.username,
            password=auth.password,
            timeout=self.timeout,
            dumb=False,
            thin_packs=False,
        )
        original = client._http_request

        def counted(*args: Any, **kw: Any) -> Any:
            self.round_trips += 1
            return original(*args, **kw)

        client._http_request = counted  # type: ignore[method-assign]
        return client

    @contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        try:
            yield
        except GitError:
            raise
        except HTTPProxyUnauthorized as exc:
            raise AuthenticationError(f"{what} '{redact(self.url)}': proxy authentication required") from exc
        except HTTPUnauthorized as exc:
            raise AuthenticationError(f"{what} '{redact(self.url)}': authentication required") from exc
        except HangupException as exc:
            msg = " ".join(line.decode(errors="replace").strip() for line in (exc.stderr_lines or [])) or str(
                exc
            )
            reason = (
                AuthenticationError
                if ("Permission denied" in msg or "Host key" in msg or "host key" in msg)
                else GitError
            )
            raise reason(f"{what} '{redact(self.url)}': {msg}") from exc
        except NotGitRepository as exc:
            raise GitError(f"{what} '{redact(self.url)}': repository not found") from exc
        except GitProtocolError as exc:
            msg = str(exc)
            if is_http_refusal(msg):
                raise AuthenticationError(f"{what} '{redact(self.url)}': {msg}") from exc
            raise GitError(f"{what} '{redact(self.url)}': {msg}") from exc
        except urllib3.exceptions.HTTPError as exc:
            raise GitError(f"{what} '{redact(self.url)}': {_root_cause(exc)}") from exc
        except OSError as exc:
            raise GitError(f"{what} '{redact(self.url)}': {exc}") from exc

    def ls_remote(self, prefixes: Sequence[bytes] = ()) -> dict[bytes, bytes]:
        """One listing of the remote's refs (peeled tags as `<ref>^{}`)."""
        with self._errors("unable to list remote refs for"):
            result = self.client.get_refs(
                self.path.encode() if isinstance(self.client, SSHGitClient) else self.path,  # type: ignore[arg-type]
                protocol_version=0,
            )
        refs: Mapping[Any, Any] = result.refs
        out: dict[bytes, bytes] = {}
        for name, sha in refs.items():
            if sha is None:
                continue
            if prefixes and not any(name.startswith(p) for p in prefixes):
                continue
            out[name] = sha
        return out

    def fetch(self, repo: BaseRepo, wants: Sequence[str], depth: int | None) -> None:
        """Fetch the objects for wants (sha hex) into repo, shallow when depth is given."""
        want_bytes = [w.encode() for w in wants]

        def determine_wants(refs: Mapping[bytes, bytes], depth: int | None = None) -> list[bytes]:
            store: Any = repo.object_store
            return [w for w in want_bytes if w not in store]

        with self._errors("unable to clone"):
            self.client.fetch(
                self.path.encode() if isinstance(self.client, SSHGitClient) else self.path,
                repo,
                determine_wants=determine_wants,  # type: ignore[arg-type]
                depth=depth,
            )


def _root_cause(exc: BaseException) -> str:
    while exc.__cause__ or exc.__context__:
        nxt = exc.__cause__ or exc.__context__
        assert nxt is not None
        exc = nxt
    reason = getattr(exc, "reason", None)
    return str(reason or exc)


MAX_SUBMODULE_DEPTH = 10


@dataclass
class CheckoutOptions:
    sparse: list[str] = field(default_factory=list)
    recurse_submodules: bool = False
    max_entries: int = 0  # files, directories, symlinks and gitlinks; 0: no limit
    submodule_depth: int = 0
    """How deep in submodules this checkout is (0: the GitRepository's own repository)."""


def clone(
    remote: Remote,
    target: Target,
    dest: Path,
    options: CheckoutOptions | None = None,
) -> Checkout:
    """Fetch what target needs (shallow when possible) and write its tree into dest."""
    options = options or CheckoutOptions()
    repo, obj, tag_object = fetch_commit(remote, target)
    try:
        dest.mkdir(parents=True, exist_ok=True)
        gitlinks = write_tree(repo, obj.tree, dest, options.sparse, options.max_entries)
        if options.recurse_submodules and gitlinks:
            _checkout_submodules(remote, repo, obj, dest, gitlinks, options.submodule_depth + 1)
        message = obj.message.decode(errors="replace")
        return Checkout(obj.id.decode(), message, tag_object, obj, remote.round_trips)
    finally:
        repo.close()


def fetch_commit(remote: Remote, target: Target) -> tuple[MemoryRepo, Commit, Tag | None]:
    """Fetch what target needs (shallow when possible): the repo (close it), the commit and
    the annotated tag that led to it, if any."""
    # Objects are inflated once, straight from the pack into memory (no pack index on disk):
    # a shallow fetch holds one tree's worth.
    repo = MemoryRepo()
    store: Any = repo.object_store
    try:
        _fetch_target(remote, repo, target)
        obj = store[target.want.encode()]
        tag_object = None
        while isinstance(obj, Tag):
            tag_object = tag_object or obj
            obj = store[obj.object[1]]
        if not isinstance(obj, Commit):
            raise GitError(f"reference '{target.ref or target.want}' does not point at a commit")
    except BaseException:
        repo.close()
        raise
    return repo, obj, tag_object


def check_entry_name(name: str, rel: str) -> None:
    if name in ("", ".", "..", ".git") or "/" in name or "\\" in name or "\x00" in name:
        raise GitError(f"refusing unsafe path in tree: {rel}{name!r}")


def _fetch_target(remote: Remote, repo: BaseRepo, target: Target) -> None:
    if target.kind != "commit":
        remote.fetch(repo, [target.want], depth=1)
        return
    # A commit: ask for it directly (servers allowing any reachable SHA), else the history.
    try:
        remote.fetch(repo, [target.want], depth=1)
    except GitError:
        pass
    store: Any = repo.object_store
    if target.want.encode() in store:
        return
    refs = remote.ls_remote([f"refs/heads/{target.branch}".encode()] if target.branch else [b"refs/heads/"])
    if not refs:
        raise GitError(
            f"unable to clone '{redact(remote.url)}': couldn't find remote ref 'refs/heads/{target.branch}'"
        )
    remote.fetch(repo, sorted({v.decode() for v in refs.values()}), depth=None)
    if target.want.encode() not in store:
        raise GitError(
            f"unable to clone '{redact(remote.url)}': commit '{target.want}' not found"
            + (f" in branch '{target.branch}'" if target.branch else "")
        )


def _sparse_filter(sparse: Sequence[str]) -> tuple[list[str], bool]:
    dirs = [d.strip("/") for d in sparse if d.strip("/") not in ("", ".")]
    return dirs, bool(dirs)


def write_tree(
    repo: BaseRepo, tree_id: bytes, dest: Path, sparse: Sequence[str] = (), max_entries: int = 0
) -> list[tuple[str, str]]:
    """Write a tree's files into dest (files, exec bits, symlinks); return submodule gitlinks.
    More than max_entries entries (0: no limit) raise TooManyEntries before any file is written."""
    dirs, is_sparse = _sparse_filter(sparse)
    store: Any = repo.object_store
    gitlinks: list[tuple[str, str]] = []
    files: list[tuple[str, bytes, int]] = []
    entries = 0

    def wanted(path: str, is_dir: bool) -> bool:
        if not is_sparse:
            return True
        for d in dirs:
            if path == d or path.startswith(d + "/"):
                return True
            if is_dir and d.startswith(path + "/"):
                return True
        return False

    def walk(tid: bytes, rel: str, out: str) -> None:
        nonlocal entries
        tree = store[tid]
        assert isinstance(tree, Tree)
        for entry in tree.iteritems():
            name = entry.path.decode("utf-8", "surrogateescape")
            check_entry_name(name, rel)
            path = f"{rel}{name}"
            target = os.path.join(out, name)
            mode = entry.mode
            if wanted(path, stat.S_ISDIR(mode)):
                # A tree object names its subtrees by hash: a few KB can expand tenfold per level.
                entries += 1
                check_entries(entries, max_entries, "Git tree")
            if stat.S_ISDIR(mode):
                if wanted(path, True):
                    os.makedirs(target, exist_ok=True)
                    walk(entry.sha, path + "/", target)
                continue
            if not wanted(path, False):
                continue
            if mode == 0o160000:
                os.makedirs(target, exist_ok=True)
                gitlinks.append((path, entry.sha.decode()))
                continue
            files.append((target, entry.sha, mode))

    walk(tree_id, "", str(dest))
    # Creating files is latency-bound (one open per file); a few threads overlap those waits.
    with ThreadPoolExecutor(max_workers=8) as pool:
        batches = [pool.submit(_write_files, store, files[i : i + 256]) for i in range(0, len(files), 256)]
        for batch in batches:
            batch.result()
    return gitlinks


def _write_files(store: Any, batch: list[tuple[str, bytes, int]]) -> None:
    for target, sha, mode in batch:
        _, data = store.get_raw(sha)
        if stat.S_ISLNK(mode):
            os.symlink(data, target)
            continue
        with open(target, "wb") as f:
            f.write(data)
        if mode & 0o100:
            os.chmod(target, 0o755)


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    default = {"http": 80, "https": 443, "ssh": 22}.get(parts.scheme)
    return parts.scheme, (parts.hostname or "").rstrip(".").lower(), parts.port or default


def submodule_auth(parent_url: str, auth: GitAuth, url: str) -> GitAuth:
    """The parent's credentials for a submodule on the parent's host (same scheme, host and port);
    for any other host only what is not a credential: CA, known hosts, proxy."""
    if _origin(url) == _origin(parent_url):
        return auth
    return GitAuth(ca_pem=auth.ca_pem, known_hosts=auth.known_hosts, proxy=auth.proxy)


def _checkout_submodules(
    remote: Remote,
    repo: BaseRepo,
    commit: Commit,
    dest: Path,
    gitlinks: list[tuple[str, str]],
    depth: int = 1,
) -> None:
    if depth > MAX_SUBMODULE_DEPTH:
        raise SubmoduleDepthExceeded(
            f"submodules are nested more than {MAX_SUBMODULE_DEPTH} levels deep "
            f"(at '{gitlinks[0][0]}' in {redact(remote.url)})"
        )
    try:
        _, blob_id = commit_tree_lookup(repo, commit.tree, b".gitmodules")
    except KeyError as exc:
        raise GitError("submodules found but no .gitmodules file") from exc
    store: Any = repo.object_store
    blob = store[blob_id]
    assert isinstance(blob, Blob)
    import io

    config = ConfigFile.from_file(io.BytesIO(blob.data))
    urls = {path.decode(): url.decode() for path, url, _name in parse_submodules(config)}
    for path, sha in gitlinks:
        url = urls.get(path)
        if url is None:
            raise GitError(f"submodule '{path}' has no URL in .gitmodules")
        if url.startswith(("./", "../")):
            url = urljoin(remote.url.rstrip("/") + "/", url)
        with Remote(url, submodule_auth(remote.url, remote.auth, url), remote.timeout) as sub:
            from tide.controllers.source.refs import Target as T

            options = CheckoutOptions(recurse_submodules=True, submodule_depth=depth)
            clone(sub, T("commit", None, sha, sha), dest / path, options)
            remote.round_trips += sub.round_trips


def commit_tree_lookup(repo: BaseRepo, tree_id: bytes, path: bytes) -> tuple[int, bytes]:
    from dulwich.object_store import tree_lookup_path

    store: Any = repo.object_store
    mode, sha = tree_lookup_path(store.__getitem__, tree_id, path)  # type: ignore[arg-type]
    return mode, sha
