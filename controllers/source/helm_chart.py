"""HelmChart: find the source, resolve the chart version, fetch (or package) the chart, check
it, merge values files, store `<name>-<version>.tgz`, report.

From an HTTP HelmRepository the version comes from the repository's stored index (parsed in
a build worker, shared by the HelmCharts of one index revision) and a reconcile whose
version is already stored downloads nothing. From an OCI HelmRepository the tags are the
versions. From a GitRepository the chart at spec.chart is packaged with Helm.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import shutil
import ssl
import tempfile
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from tide.controllers.source import helm_chart_build, helm_http, helm_index, oci
from tide.controllers.source.conditions import (
    ARTIFACT_IN_STORAGE,
    ARTIFACT_OUTDATED,
    FETCH_FAILED,
    READY,
    STORAGE_FAILED,
)
from tide.controllers.source.helm_chart_build import (
    Built,
    ChartArchiveError,
    ChartLimits,
    ChartPackageError,
    ValuesFilesError,
    with_metadata,
)
from tide.controllers.source.helm_repository import (
    DEFAULT_INDEX_MAX_SIZE,
    SecretMissing,
    read_secret,
    repository_access,
)
from tide.controllers.source.stored_source import StoredSourceReconciler
from tide.shared.api.meta import Artifact
from tide.shared.api.source import GitRepository, HelmChart, HelmRepository
from tide.shared.runtime import ReconcileContext, ReconcileError, Result, StalledError

KIND = "HelmChart"
API_VERSION = "source.toolkit.fluxcd.io/v1"

BUILD_FAILED = "BuildFailed"
CHART_PULL_SUCCEEDED = "ChartPullSucceeded"
CHART_PACKAGE_SUCCEEDED = "ChartPackageSucceeded"
# Flux's build error reasons (the BuildFailed condition's reason).
CHART_REFERENCE_ERROR = "ChartReferenceError"
CHART_PULL_ERROR = "ChartPullError"
VALUES_FILES_ERROR = "ValuesFilesError"
CHART_PACKAGE_ERROR = "ChartPackageError"

HELM_CHART_LAYER = "application/vnd.cncf.helm.chart.content.v1.tar+gzip"
# A dependency's repository that no HelmRepository names has no spec.timeout: Flux's default.
UNLISTED_TIMEOUT = 60.0


@dataclass(frozen=True)
class Wanted:
    """What the spec asks of a build, whatever the source."""

    values_files: list[str]
    ignore_missing: bool
    version_metadata: str | None


class BuildFailed(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def source_revision_metadata(kind: str, revision: str) -> str:
    """reconcileStrategy Revision: the source's revision, a Git commit to its first 12 characters."""
    rev = revision.rsplit("@", 1)[-1].rsplit(":", 1)[-1] if kind == "GitRepository" else revision
    return rev[:12]


def version_metadata(chart: HelmChart, source_kind: str, source_revision: str | None) -> str | None:
    """Flux's `<ver>+<metadata>`: the source revision (strategy Revision, Git sources) then the
    generation when values files are merged, joined with a dot."""
    spec = chart.spec
    parts: list[str] = []
    if spec.reconcile_strategy == "Revision" and source_kind != "HelmRepository" and source_revision:
        parts.append(source_revision_metadata(source_kind, source_revision))
    if spec.all_values_files():
        parts.append(str(chart.metadata.generation or 0))
    return ".".join(parts) or None


def charts_referencing(
    items: Iterable[dict[str, Any]], kind: str, namespace: str, name: str
) -> list[tuple[str, str]]:
    out = []
    for item in items:
        meta = item.get("metadata") or {}
        ref = (item.get("spec") or {}).get("sourceRef") or {}
        if meta.get("namespace") == namespace and ref.get("kind") == kind and ref.get("name") == name:
            out.append((namespace, str(meta.get("name") or "")))
    return out


def _artifact_revision(obj: dict[str, Any] | None) -> str | None:
    return (((obj or {}).get("status") or {}).get("artifact") or {}).get("revision")


class HelmChartReconciler(StoredSourceReconciler[HelmChart]):
    reports_progress = True  # ctx.while_progressing around the pull and build
    model = HelmChart
    kind = KIND
    ready_message = "stored artifact: revision '{revision}'"

    def __init__(
        self,
        *args: Any,
        limits: ChartLimits | None = None,
        index_cache: helm_index.CacheSettings | None = None,
        index_max_size: int = DEFAULT_INDEX_MAX_SIZE,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.limits = limits or ChartLimits()
        self.index_max_size = index_max_size
        self.index_cache = index_cache or helm_index.CacheSettings()
        self.auth_cache = oci.AuthCache()

    def setup(self, controller: Any) -> None:
        """A new artifact of a source (a new index, a new commit) reconciles its HelmCharts."""

        def watch(kind: str) -> None:
            def keys(obj: dict[str, Any]) -> list[tuple[str, str]]:
                meta = obj.get("metadata") or {}
                informer = controller.informer
                items = informer.items() if informer is not None else []
                return charts_referencing(items, kind, meta.get("namespace") or "", meta.get("name") or "")

            controller.watch(
                API_VERSION,
                kind,
                keys,
                namespace=controller.namespace,
                predicate=lambda old, new: (
                    _artifact_revision(old) != _artifact_revision(new)
                    or (old or {}).get("spec") != new.get("spec")
                ),
            )

        watch("HelmRepository")
        watch("GitRepository")

    # -- the story --------------------------------------------------------------------------

    async def reconcile(self, obj: HelmChart, ctx: ReconcileContext) -> Result:
        spec, status = obj.spec, ctx.status
        await self._check_storage(obj, ctx)
        if spec.verify is not None:
            raise StalledError(
                "VerificationError",
                f"chart signature verification with '{spec.verify.provider or 'cosign'}' is not supported "
                "by Tide: remove spec.verify",
            )
        ref = spec.source_ref
        if ref.kind == "Bucket":
            raise StalledError(
                "UnsupportedSourceKind",
                f"source kind 'Bucket' ('{ref.name}') is not supported by Tide yet: use a HelmRepository "
                "or a GitRepository",
            )
        ns = obj.metadata.namespace or ""
        raw = await ctx.kube.get(API_VERSION, ref.kind, ref.name, ns)
        if raw is None:
            self._fetch_failed(
                ctx,
                "SourceUnavailable",
                f'failed to get source: {ref.kind.lower()}s.source.toolkit.fluxcd.io "{ref.name}" not found',
            )
        recovering = any(
            c.get("type") in (FETCH_FAILED, STORAGE_FAILED, BUILD_FAILED) and c.get("status") == "True"
            for c in ctx.stored_status.get("conditions") or []
        )
        wanted_files = spec.all_values_files()
        work = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="tide-helmchart-"))
        try:
            if ref.kind == "HelmRepository":
                repo = HelmRepository.model_validate(raw)
                fetch = (self._from_oci if repo.is_oci() else self._from_index)(obj, ctx, repo, work)
                source_revision = None if repo.is_oci() else _artifact_revision(raw)
            else:
                fetch = self._from_git(obj, ctx, GitRepository.model_validate(raw), work)
                source_revision = _artifact_revision(raw)
            outcome = await ctx.while_progressing(None, fetch)
            if outcome is None:  # the stored artifact is what the spec asks for
                assert status.artifact is not None
                status.observed_source_artifact_revision = source_revision
                self._ready_chart(ctx, obj, status.artifact.revision, packaged=self._packaged(obj))
                if recovering:
                    ctx.event("Normal", "Succeeded", self._message(obj, status.artifact.revision))
                await self._collect_garbage(obj, ctx)
                return Result()
            artifact = await self._store(obj, ctx, outcome)
        finally:
            await asyncio.to_thread(shutil.rmtree, work, True)

        status.artifact = artifact
        status.url = await asyncio.to_thread(self.storage.symlink, artifact.path, "latest.tar.gz")
        status.observed_source_artifact_revision = source_revision
        status.observed_chart_name = outcome.name
        status.observed_values_files = outcome.observed_values_files if wanted_files else None
        self._ready_chart(ctx, obj, artifact.revision, packaged=outcome.packaged)
        reason = CHART_PACKAGE_SUCCEEDED if outcome.packaged else CHART_PULL_SUCCEEDED
        ctx.event(
            "Normal",
            reason,
            self._message(obj, artifact.revision, outcome.name, outcome.packaged),
            metadata={"revision": artifact.revision, "digest": artifact.digest or ""},
        )
        await self._collect_garbage(obj, ctx)
        return Result()

    # -- sources ----------------------------------------------------------------------------

    def _wanted(self, obj: HelmChart, source_kind: str, source_revision: str | None) -> Wanted:
        return Wanted(
            obj.spec.all_values_files(),
            bool(obj.spec.ignore_missing_values_files),
            version_metadata(obj, source_kind, source_revision),
        )

    def _up_to_date(self, obj: HelmChart, ctx: ReconcileContext, revision: str) -> bool:
        """The stored artifact has the revision the spec and source now give, for this spec."""
        status = ctx.status
        return (
            status.artifact is not None
            and status.artifact.revision == revision
            and status.observed_chart_name is not None
            and ctx.observed_generation == obj.metadata.generation
            and (obj.spec.source_ref.kind != "HelmRepository" or status.observed_chart_name == obj.spec.chart)
        )

    async def _from_index(
        self, obj: HelmChart, ctx: ReconcileContext, repo: HelmRepository, work: Path
    ) -> Built | None:
        spec = obj.spec
        if not await self._has_index(repo):
            self._fetch_failed(
                ctx,
                "NoSourceArtifact",
                f"no artifact available for HelmRepository source '{repo.metadata.name}'",
            )
        try:
            version = await self._resolve(repo, spec.chart, spec.version)
        except helm_index.IndexError_ as exc:
            self._build_failed(ctx, CHART_REFERENCE_ERROR, f"chart reference error: {exc}")
        ctx.remove_condition(FETCH_FAILED)
        wanted = self._wanted(obj, "HelmRepository", None)
        if self._up_to_date(obj, ctx, with_metadata(version.version, wanted.version_metadata)):
            return None
        self._outdated(ctx, f"new chart version '{version.version}' for '{spec.chart}'")
        archive = work / "chart.tgz"
        try:
            await self._download(ctx, repo, version, archive)
        except (SecretMissing, oci.InvalidCredentials) as exc:
            self._fetch_failed(ctx, "AuthenticationFailed", str(exc))
        except (helm_http.HelmHTTPError, helm_index.IndexError_) as exc:
            self._build_failed(ctx, CHART_PULL_ERROR, f"chart pull error: {exc}")
        return await self._build(ctx, archive, work, wanted)

    async def _has_index(self, repo: HelmRepository) -> bool:
        index = repo.status.artifact
        return index is not None and await asyncio.to_thread(self.storage.verify, index.path, index.digest)

    async def _resolve(
        self, repo: HelmRepository, name: str, constraint: str | None
    ) -> helm_index.ChartVersion:
        """The chart version from the repository's stored index (parsed in a worker, once per revision)."""
        index = repo.status.artifact
        assert index is not None and index.digest is not None
        version: helm_index.ChartVersion = await self.builds.run(
            helm_index.resolve_stored, self.storage.local_path(index.path), index.digest, name, constraint,
            self.index_cache,
        )  # fmt: skip
        return version

    async def _download(
        self, ctx: ReconcileContext, repo: HelmRepository, version: helm_index.ChartVersion, dest: Path
    ) -> None:
        """The .tgz with the repository's credentials."""
        access = await repository_access(ctx.kube, repo)
        await self._fetch_checked(access, repo.spec.url, version, dest, repo.spec.timeout_seconds())

    async def _fetch_checked(
        self,
        access: helm_http.RepositoryAccess,
        repository_url: str,
        version: helm_index.ChartVersion,
        dest: Path,
        timeout: float,  # noqa: ASYNC109 - the repository's spec.timeout
    ) -> None:
        """Download a chart version and check it against the digest of its index entry."""
        url = helm_index.chart_url(repository_url, version)
        fetched = await helm_http.fetch(access, url, dest, self.limits.max_size, timeout, "chart")
        assert fetched is not None
        want = "sha256:" + (version.digest or "").removeprefix("sha256:")
        if version.digest and fetched.digest != want:
            raise helm_http.HelmHTTPError(
                f"digest mismatch for '{url}': the index says '{want}', the download is '{fetched.digest}'"
            )

    async def _from_oci(
        self, obj: HelmChart, ctx: ReconcileContext, repo: HelmRepository, work: Path
    ) -> Built | None:
        spec = obj.spec
        archive = work / "chart.tgz"
        async with self._oci_client(ctx, repo, spec.chart) as (client, timeout):
            try:
                chosen, tag = await self._oci_choose(client, spec.chart, spec.version, timeout)
            except helm_index.IndexError_ as exc:
                self._build_failed(ctx, CHART_REFERENCE_ERROR, f"chart reference error: {exc}")
            except (oci.RegistryError, TimeoutError) as exc:
                self._build_failed(
                    ctx,
                    CHART_PULL_ERROR,
                    f"chart pull error: failed to list tags of '{repo.spec.url}/{spec.chart}': "
                    f"{exc or 'timeout'}",
                )
            ctx.remove_condition(FETCH_FAILED)
            wanted = self._wanted(obj, "HelmRepository", None)
            if self._up_to_date(obj, ctx, with_metadata(chosen.version, wanted.version_metadata)):
                return None
            self._outdated(ctx, f"new chart version '{chosen.version}' for '{spec.chart}'")
            try:
                await self._oci_pull(client, tag, archive, timeout)
            except (oci.RegistryError, TimeoutError, OSError) as exc:
                self._build_failed(ctx, CHART_PULL_ERROR, f"chart pull error: {exc or 'timeout'}")
        return await self._build(ctx, archive, work, wanted)

    @asynccontextmanager
    async def _oci_client(
        self, ctx: ReconcileContext, repo: HelmRepository, chart: str
    ) -> AsyncIterator[tuple[oci.RegistryClient, float]]:
        """A registry client for `<repository URL>/<chart>` with the repository's credentials."""
        rspec = repo.spec
        if (rspec.provider or "generic") != "generic":
            raise StalledError(
                "UnsupportedProvider",
                f"HelmRepository '{repo.metadata.name}' uses provider '{rspec.provider}', which Tide does "
                "not support: use provider 'generic' with spec.secretRef",
            )
        try:
            target = oci.parse_url(f"{rspec.url.rstrip('/')}/{chart}", bool(rspec.insecure))
        except oci.InvalidURL as exc:
            self._fetch_failed(ctx, "URLInvalid", f"invalid OCI chart reference: {exc}")
        credentials, tls = await self._oci_access(ctx, repo, target)
        timeout = rspec.timeout_seconds()
        connector = aiohttp.TCPConnector(ssl=tls, limit=4)
        client_timeout = aiohttp.ClientTimeout(total=None, sock_connect=timeout, sock_read=timeout)
        async with aiohttp.ClientSession(
            connector=connector, timeout=client_timeout, auto_decompress=False
        ) as http:
            yield oci.RegistryClient(http, target, credentials, None, self.auth_cache), timeout

    @staticmethod
    async def _oci_choose(
        client: oci.RegistryClient,
        chart: str,
        constraint: str | None,
        timeout: float,  # noqa: ASYNC109
    ) -> tuple[helm_index.ChartVersion, str]:
        """The chart version among the tags (Helm's rules) and its tag."""
        async with asyncio.timeout(timeout):
            tags = await client.tags()
        # `helm push` writes `+` of a version as `_` in the tag.
        versions = {tag.replace("_", "+"): tag for tag in tags}
        index = {chart: [helm_index.ChartVersion(chart, v, (), None) for v in versions]}
        chosen = helm_index.resolve(index, chart, constraint)
        return chosen, versions[chosen.version]

    async def _oci_pull(
        self,
        client: oci.RegistryClient,
        tag: str,
        archive: Path,
        timeout: float,  # noqa: ASYNC109
    ) -> None:
        """The chart layer of the tag's manifest, size-checked before the download."""
        async with asyncio.timeout(timeout):
            manifest = await client.manifest(tag)
            layers = [
                layer
                for layer in manifest.body.get("layers") or []
                if layer.get("mediaType") == HELM_CHART_LAYER
            ]
            if not layers:
                raise oci.RegistryError(f"'{client.repo.reference(tag=tag)}' is no Helm chart")
            size = layers[0].get("size")
            if isinstance(size, int) and self.limits.max_size and size > self.limits.max_size:
                raise oci.RegistryError(
                    f"chart size {size} exceeds the maximum of {self.limits.max_size} bytes"
                )
            await client.download_blob(layers[0], archive)

    async def _oci_access(
        self, ctx: ReconcileContext, repo: HelmRepository, target: oci.Repository
    ) -> tuple[oci.Credentials | None, ssl.SSLContext]:
        rspec, ns = repo.spec, repo.metadata.namespace or ""
        credentials = None
        try:
            if rspec.secret_ref is not None:
                data = await read_secret(ctx.kube, ns, rspec.secret_ref.name)
                if data.get("username") and data.get("password"):
                    credentials = oci.Credentials(data["username"].decode(), data["password"].decode())
                else:
                    credentials = oci.credentials_for(target.registry, oci.docker_config_auths(data))
            tls_data: dict[str, bytes] = {}
            if rspec.cert_secret_ref is not None:
                tls_data = await read_secret(
                    ctx.kube, ns, rspec.cert_secret_ref.name, "TLS authentication secret "
                )
            tls = await asyncio.to_thread(
                oci.tls_context,
                tls_data.get("ca.crt"),
                tls_data.get("tls.crt"),
                tls_data.get("tls.key"),
                bool(rspec.insecure) and rspec.cert_secret_ref is None,
            )
        except (SecretMissing, oci.InvalidCredentials) as exc:
            self._fetch_failed(ctx, "AuthenticationFailed", str(exc))
        return credentials, tls

    async def _from_git(
        self, obj: HelmChart, ctx: ReconcileContext, git: GitRepository, work: Path
    ) -> Built | None:
        spec = obj.spec
        artifact = git.status.artifact
        if artifact is None or not await asyncio.to_thread(
            self.storage.verify, artifact.path, artifact.digest
        ):
            self._fetch_failed(
                ctx,
                "NoSourceArtifact",
                f"no artifact available for GitRepository source '{git.metadata.name}'",
            )
        assert artifact is not None
        try:
            source: helm_chart_build.SourceChart = await self.builds.run(
                helm_chart_build.open_source_chart, self.storage.local_path(artifact.path), work / "src",
                spec.chart, self.max_artifact_size,
            )  # fmt: skip
        except ChartArchiveError as exc:
            self._build_failed(ctx, CHART_REFERENCE_ERROR, f"chart reference error: {exc}")
        ctx.remove_condition(FETCH_FAILED)
        wanted = self._wanted(obj, "GitRepository", artifact.revision)
        version = with_metadata(source.version, wanted.version_metadata)
        if self._up_to_date(obj, ctx, version):
            return None
        self._outdated(ctx, f"new chart version '{version}' for '{spec.chart}'")
        archives = [await self._dependency(obj, ctx, dep, work, i) for i, dep in enumerate(source.missing)]
        out = work / "out"
        await asyncio.to_thread(out.mkdir)
        try:
            built: Built = await self.builds.run(
                helm_chart_build.package_source_chart, source, out, self.limits,
                [a for a in archives if a is not None], wanted.values_files, wanted.ignore_missing, version,
            )  # fmt: skip
        except ChartArchiveError as exc:
            self._build_failed(ctx, "DependencyBuildError", f"dependency build error: {exc}")
        except ValuesFilesError as exc:
            self._build_failed(ctx, VALUES_FILES_ERROR, f"values files merge error: {exc}")
        except ChartPackageError as exc:
            self._build_failed(ctx, CHART_PACKAGE_ERROR, str(exc))
        return built

    async def _dependency(
        self, obj: HelmChart, ctx: ReconcileContext, dep: helm_chart_build.Dependency, work: Path, n: int
    ) -> Path | None:
        """A remote dependency through the HelmRepository with its URL (and its credentials)."""
        if dep.repository.startswith("file://"):
            return None  # packaged from the source in the worker
        failed = functools.partial(self._build_failed, ctx, "DependencyBuildError")
        if dep.repository.startswith("oci://"):
            return await self._oci_dependency(obj, ctx, dep, work / "deps" / str(n))
        if not dep.repository.startswith(("http://", "https://")):
            failed(
                f"dependency build error: dependency '{dep.name}' "
                f"from '{dep.repository or '(no repository)'}' "
                "is not supported: vendor it in charts/ or use an http(s) repository with a HelmRepository"
            )
        ns = obj.metadata.namespace or ""
        repos = (await ctx.kube.list(API_VERSION, "HelmRepository", ns)) or []
        match = next(
            (
                r
                for r in repos
                if (r.get("spec") or {}).get("url", "").rstrip("/") == dep.repository.rstrip("/")
            ),
            None,
        )
        if match is None:
            try:
                return await self._unlisted_dependency(dep, work / "deps" / str(n))
            except (helm_index.IndexError_, helm_http.HelmHTTPError) as exc:
                failed(
                    f"dependency build error: dependency '{dep.name}' from '{dep.repository}' "
                    f"(no HelmRepository with this URL, read without credentials): {exc}"
                )
        repo = HelmRepository.model_validate(match)
        if not await self._has_index(repo):
            failed(f"dependency build error: HelmRepository '{repo.metadata.name}' has no index artifact yet")
        try:
            version = await self._resolve(repo, dep.name, dep.version)
            archive = work / "deps" / str(n) / f"{dep.name}-{version.version}.tgz"
            await asyncio.to_thread(archive.parent.mkdir, parents=True)
            await self._download(ctx, repo, version, archive)
        except (
            helm_index.IndexError_, helm_http.HelmHTTPError, SecretMissing, oci.InvalidCredentials,
        ) as exc:  # fmt: skip
            failed(f"dependency build error: dependency '{dep.name}': {exc}")
        return archive

    async def _oci_dependency(
        self, obj: HelmChart, ctx: ReconcileContext, dep: helm_chart_build.Dependency, work: Path
    ) -> Path:
        """An oci:// dependency through the OCI HelmRepository with its URL (else without credentials)."""
        ns = obj.metadata.namespace or ""
        repos = (await ctx.kube.list(API_VERSION, "HelmRepository", ns)) or []
        match = next(
            (
                r
                for r in repos
                if (r.get("spec") or {}).get("type") == "oci"
                and (r.get("spec") or {}).get("url", "").rstrip("/") == dep.repository.rstrip("/")
            ),
            {"metadata": {"name": "", "namespace": ns}, "spec": {"url": dep.repository, "type": "oci"}},
        )
        repo = HelmRepository.model_validate(match)
        await asyncio.to_thread(work.mkdir, parents=True)
        async with self._oci_client(ctx, repo, dep.name) as (client, timeout):
            try:
                chosen, tag = await self._oci_choose(client, dep.name, dep.version, timeout)
                archive = work / f"{dep.name}-{chosen.version}.tgz"
                await self._oci_pull(client, tag, archive, timeout)
            except (helm_index.IndexError_, oci.RegistryError, TimeoutError, OSError) as exc:
                self._build_failed(
                    ctx,
                    "DependencyBuildError",
                    f"dependency build error: dependency '{dep.name}' from '{dep.repository}': "
                    f"{exc or 'timeout'}",
                )
        return archive

    async def _unlisted_dependency(self, dep: helm_chart_build.Dependency, work: Path) -> Path:
        """As Flux: a repository no HelmRepository names is read directly, without credentials."""
        await asyncio.to_thread(work.mkdir, parents=True)
        access = helm_http.RepositoryAccess(dep.repository)
        index_file = work / "index.yaml"
        fetched = await helm_http.fetch(
            access, helm_http.index_url(dep.repository), index_file, self.index_max_size, UNLISTED_TIMEOUT,
            "index",
        )  # fmt: skip
        assert fetched is not None
        version: helm_index.ChartVersion = await self.builds.run(
            helm_index.resolve_stored, index_file, fetched.digest, dep.name, dep.version, self.index_cache
        )
        archive = work / f"{dep.name}-{version.version}.tgz"
        await self._fetch_checked(access, dep.repository, version, archive, UNLISTED_TIMEOUT)
        return archive

    # -- build and store --------------------------------------------------------------------

    async def _build(self, ctx: ReconcileContext, archive: Path, work: Path, wanted: Wanted) -> Built:
        out = work / "out"
        await asyncio.to_thread(out.mkdir)
        try:
            built: Built = await self.builds.run(
                helm_chart_build.build_from_archive, archive, out, self.limits, wanted.values_files,
                wanted.ignore_missing, wanted.version_metadata,
            )  # fmt: skip
        except ChartArchiveError as exc:
            self._build_failed(ctx, CHART_PULL_ERROR, f"chart pull error: {exc}")
        except ValuesFilesError as exc:
            self._build_failed(ctx, VALUES_FILES_ERROR, f"values files merge error: {exc}")
        except ChartPackageError as exc:
            self._build_failed(ctx, CHART_PACKAGE_ERROR, str(exc))
        return built

    async def _store(self, obj: HelmChart, ctx: ReconcileContext, built: Built) -> Artifact:
        ns, name = obj.metadata.namespace or "", obj.metadata.name or ""
        rel = f"{self.storage.object_dir(KIND, ns, name)}/{built.name}-{built.version}.tgz"
        temp = await asyncio.to_thread(self.storage.new_temp_file, KIND, ns, name)
        try:
            digest, size = await asyncio.to_thread(_copy_hashing, built.path, temp)
            await self._commit(ctx, temp, rel, digest)
        finally:
            await asyncio.to_thread(temp.unlink, True)
        ctx.remove_condition(BUILD_FAILED)
        return self._stored_artifact(rel, built.version, digest, size)

    # -- conditions -------------------------------------------------------------------------

    def _build_failed(self, ctx: ReconcileContext, reason: str, message: str) -> Any:
        ctx.set_condition(BUILD_FAILED, "True", reason, message)
        raise ReconcileError(reason, message)

    def _outdated(self, ctx: ReconcileContext, message: str) -> None:
        """The stored artifact is outdated: Reconciling says what is built, written by
        while_progressing in `reconcile` if the pull and build outlast its grace."""
        if ctx.status.artifact is not None:
            ctx.set_condition(ARTIFACT_OUTDATED, "True", "NewChart", message)
        ctx.mark_reconciling(f"building artifact: {message}")

    def _packaged(self, obj: HelmChart) -> bool:
        return obj.spec.source_ref.kind != "HelmRepository" or bool(obj.spec.all_values_files())

    def _message(
        self, obj: HelmChart, version: str, name: str | None = None, packaged: bool | None = None
    ) -> str:
        verb = "packaged" if (self._packaged(obj) if packaged is None else packaged) else "pulled"
        return f"{verb} '{name or ctx_chart_name(obj)}' chart with version '{version}'"

    def _ready_chart(self, ctx: ReconcileContext, obj: HelmChart, version: str, packaged: bool) -> None:
        name = ctx.status.observed_chart_name or ctx_chart_name(obj)
        message = f"{'packaged' if packaged else 'pulled'} '{name}' chart with version '{version}'"
        ctx.remove_condition(ARTIFACT_OUTDATED)
        ctx.remove_condition(FETCH_FAILED)
        ctx.remove_condition(STORAGE_FAILED)
        ctx.remove_condition(BUILD_FAILED)
        ctx.set_condition(ARTIFACT_IN_STORAGE, "True", "Succeeded", f"stored artifact: revision '{version}'")
        ctx.set_condition(
            READY, "True", CHART_PACKAGE_SUCCEEDED if packaged else CHART_PULL_SUCCEEDED, message
        )

    async def _check_storage(self, obj: HelmChart, ctx: ReconcileContext) -> bool:
        ok = await super()._check_storage(obj, ctx)
        if not ok:
            ctx.status.url = None
        return ok


def ctx_chart_name(obj: HelmChart) -> str:
    """The chart's name as the spec gives it (a path's last element for Git sources)."""
    return obj.spec.chart.rstrip("/").rsplit("/", 1)[-1]


def _copy_hashing(source: Path, dest: Path) -> tuple[str, int]:
    h = hashlib.sha256()
    size = 0
    with source.open("rb") as src, dest.open("wb") as out:
        while chunk := src.read(1 << 20):
            h.update(chunk)
            out.write(chunk)
            size += len(chunk)
    return "sha256:" + h.hexdigest(), size
