"""OCIRepository: resolve the reference, compare with the stored artifact, pull the manifest and
the selected layer, extract (ignore rules applied) or copy it, store, report.

A reconcile where the reference still resolves to the stored artifact's manifest digest (and
spec.ignore / spec.layerSelector are unchanged) is one HEAD of the manifest; a digest
reference needs no request at all.
"""

from __future__ import annotations

import asyncio
import functools
import shutil
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from tide.controllers.source import oci, oci_layer, oci_refs
from tide.controllers.source.conditions import (
    ARCHIVE_FAILED,
    ARTIFACT_OUTDATED,
    AUTHENTICATION_FAILED,
    FETCH_FAILED,
    LAYER_FAILED,
    PULL_FAILED,
    READ_FAILED,
    STORAGE_FAILED,
    URL_INVALID,
)
from tide.controllers.source.oci_refs import COPY
from tide.controllers.source.proxy import Proxy
from tide.controllers.source.stored_source import StoredSourceReconciler
from tide.controllers.source.tarball import Archive, ArtifactTooLarge
from tide.shared.api.meta import Artifact
from tide.shared.api.source import OCIRepository
from tide.shared.kube import secret_data
from tide.shared.runtime import ReconcileContext, ReconcileError, Result, StalledError
from tide.shared.runtime.conditions import SUCCEEDED_REASON

KIND = "OCIRepository"


# Flux's annotations of `flux push artifact`, echoed in the NewArtifact event.
SOURCE_ANNOTATION = "org.opencontainers.image.source"
REVISION_ANNOTATION = "org.opencontainers.image.revision"


@dataclass
class Access:
    """How to talk to the registry: credentials, TLS and proxy from the spec's secrets."""

    credentials: oci.Credentials | None
    tls: Any  # ssl.SSLContext
    proxy: Proxy | None


@dataclass(frozen=True)
class Resolved:
    reference: str  # e.g. 127.0.0.1:5000/app:v1 (for messages)
    digest: str  # manifest digest
    revision: str  # v1@sha256:... or sha256:...


class OCIRepositoryReconciler(StoredSourceReconciler[OCIRepository]):
    model = OCIRepository
    kind = KIND
    ready_message = "stored artifact for digest '{revision}'"

    @functools.cached_property
    def auth_cache(self) -> oci.AuthCache:
        """Registry logins and tokens, reused across reconciles (a no-op stays one HEAD)."""
        return oci.AuthCache()

    # -- the story --------------------------------------------------------------------------

    async def reconcile(self, obj: OCIRepository, ctx: ReconcileContext) -> Result:
        spec, status = obj.spec, ctx.status
        await self._check_storage(obj, ctx)
        self._check_supported(obj)
        repo = self._repository(obj, ctx)
        access = await self._access(obj, ctx, repo)
        recovering = any(
            c.get("type") in (FETCH_FAILED, STORAGE_FAILED) and c.get("status") == "True"
            for c in ctx.stored_status.get("conditions") or []
        )
        limit = spec.timeout_seconds()
        started = time.perf_counter()
        async with self._registry(repo, access, limit) as client:
            resolving = self._resolve(ctx, client, obj, repo)
            resolved = await self._bounded(ctx, limit, "failed to determine artifact digest", resolving)
            if self._up_to_date(obj, ctx, resolved):
                self._ready(ctx, resolved.revision)
                if recovering:
                    self._notify(obj, ctx, status.artifact, recovering)
                await self._collect_garbage(obj, ctx)
                ctx.log.debug("artifact up-to-date with remote revision: '%s'", resolved.revision)
                return Result()
            message = f"new revision '{resolved.revision}' for '{resolved.reference}'"
            if status.artifact is not None and status.artifact.revision != resolved.revision:
                ctx.set_condition(ARTIFACT_OUTDATED, "True", "NewRevision", message)
            await ctx.progress(f"building artifact: {message}")
            resolved_at = time.perf_counter()
            pulling = self._pull(ctx, client, obj, resolved)
            artifact = await self._bounded(ctx, limit, f"failed to pull artifact from '{spec.url}'", pulling)
            pulled = time.perf_counter()

        previous = status.artifact
        status.artifact = artifact
        status.url = await asyncio.to_thread(self.storage.symlink, artifact.path, "latest.tar.gz")
        status.observed_ignore = spec.ignore
        status.observed_layer_selector = spec.layer_selector
        self._ready(ctx, artifact.revision)
        self._notify(obj, ctx, previous, recovering)
        await self._collect_garbage(obj, ctx)
        ctx.log.info(
            "stored artifact for revision '%s' in %.2fs: resolve %.2fs, pull+store %.2fs (%d requests)",
            artifact.revision, time.perf_counter() - started, resolved_at - started, pulled - resolved_at,
            client.requests,
        )  # fmt: skip
        return Result()

    # -- steps ------------------------------------------------------------------------------

    @staticmethod
    def _check_supported(obj: OCIRepository) -> None:
        spec = obj.spec
        if spec.verify is not None:
            raise StalledError(
                "VerificationError",
                f"signature verification with '{spec.verify.provider or 'cosign'}' is not supported by Tide: "
                "remove spec.verify",
            )
        provider = spec.provider or "generic"
        # As in Flux, a provider only logs in when no static credentials are given.
        if provider != "generic" and spec.secret_ref is None and not spec.service_account_name:
            raise StalledError(
                "UnsupportedProvider",
                f"provider '{provider}' is not supported by Tide: use provider 'generic' with "
                "spec.secretRef (a kubernetes.io/dockerconfigjson secret)",
            )

    def _repository(self, obj: OCIRepository, ctx: ReconcileContext) -> oci.Repository:
        try:
            return oci.parse_url(obj.spec.url, bool(obj.spec.insecure))
        except oci.InvalidURL as exc:
            message = f"URL validation failed for '{obj.spec.url}': {exc}"
            ctx.set_condition(FETCH_FAILED, "True", URL_INVALID, message)
            raise StalledError(URL_INVALID, message) from exc

    async def _secret(self, ctx: ReconcileContext, namespace: str, name: str, what: str) -> dict[str, bytes]:
        secret = await ctx.kube.get("v1", "Secret", name, namespace)
        if secret is None:
            self._fetch_failed(
                ctx,
                AUTHENTICATION_FAILED,
                f"{what}: failed to get secret '{namespace}/{name}': secrets \"{name}\" not found",
            )
        return secret_data(secret)

    async def _access(self, obj: OCIRepository, ctx: ReconcileContext, repo: oci.Repository) -> Access:
        spec, ns = obj.spec, obj.metadata.namespace or ""
        pull_secrets: list[tuple[str, dict[str, bytes]]] = []
        if spec.secret_ref is not None:
            data = await self._secret(ctx, ns, spec.secret_ref.name, "failed to get credential")
            pull_secrets.append((spec.secret_ref.name, data))
        if spec.service_account_name:
            pull_secrets += await self._service_account_secrets(ctx, ns, spec.service_account_name)
        credentials = None
        for name, data in pull_secrets:
            try:
                auths = oci.docker_config_auths(data)
                credentials = oci.credentials_for(repo.registry, auths)
            except oci.InvalidCredentials as exc:
                # Flux's keychain skips secrets that are no docker config.
                ctx.log.info("secret '%s/%s' gives no registry credentials: %s", ns, name, exc)
                continue
            if credentials is not None:
                break

        tls_data: dict[str, bytes] = {}
        if spec.cert_secret_ref is not None:
            tls_data = await self._secret(
                ctx, ns, spec.cert_secret_ref.name, f"failed to generate transport for '{spec.url}'"
            )
        try:
            tls = await asyncio.to_thread(
                oci.tls_context,
                tls_data.get("ca.crt"),
                tls_data.get("tls.crt"),
                tls_data.get("tls.key"),
                bool(spec.insecure) and spec.cert_secret_ref is None,
            )
        except oci.InvalidCredentials as exc:
            self._fetch_failed(
                ctx, AUTHENTICATION_FAILED, f"failed to generate transport for '{spec.url}': {exc}"
            )

        proxy = None
        if spec.proxy_secret_ref is not None:
            data = await self._secret(ctx, ns, spec.proxy_secret_ref.name, "failed to get proxy address")
            proxy = Proxy.from_secret_data(data)
            if proxy is None:
                self._fetch_failed(
                    ctx,
                    AUTHENTICATION_FAILED,
                    f"failed to get proxy address: secret '{ns}/{spec.proxy_secret_ref.name}': "
                    "key 'address' not found",
                )
        return Access(credentials, tls, proxy)

    async def _service_account_secrets(
        self, ctx: ReconcileContext, namespace: str, name: str
    ) -> list[tuple[str, dict[str, bytes]]]:
        account = await ctx.kube.get("v1", "ServiceAccount", name, namespace)
        if account is None:
            self._fetch_failed(
                ctx,
                AUTHENTICATION_FAILED,
                f'failed to get credential: serviceaccounts "{name}" not found',
            )
        out = []
        for ref in account.get("imagePullSecrets") or []:
            secret_name = ref.get("name") or ""
            secret = await ctx.kube.get("v1", "Secret", secret_name, namespace) if secret_name else None
            if secret is not None:
                out.append((secret_name, secret_data(secret)))
        return out

    @asynccontextmanager
    async def _registry(
        self, repo: oci.Repository, access: Access, limit: float
    ) -> AsyncIterator[oci.RegistryClient]:
        connector = aiohttp.TCPConnector(ssl=access.tls, limit=4)
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=limit, sock_read=limit)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout, auto_decompress=False) as http:
            yield oci.RegistryClient(http, repo, access.credentials, access.proxy, self.auth_cache)

    async def _bounded(self, ctx: ReconcileContext, limit: float, what: str, step: Any) -> Any:
        """Registry work bounded by spec.timeout; a timeout is a FetchFailed like any pull error."""
        try:
            async with asyncio.timeout(limit):
                return await step
        except TimeoutError:
            self._fetch_failed(ctx, PULL_FAILED, f"{what}: timeout after {limit:g}s")

    async def _resolve(
        self, ctx: ReconcileContext, client: oci.RegistryClient, obj: OCIRepository, repo: oci.Repository
    ) -> Resolved:
        want = oci_refs.wanted(obj.spec.ref)
        if want.kind == "digest":
            try:
                digest = oci_refs.check_digest(want.value)
            except oci_refs.InvalidReference as exc:
                self._fetch_failed(ctx, PULL_FAILED, f"failed to determine artifact digest: {exc}")
            return Resolved(repo.reference(digest=digest), digest, oci_refs.revision(None, digest))
        tag = want.value
        if want.kind == "semver":
            try:
                tag = oci_refs.highest_tag(await client.tags(), want.value, want.semver_filter)
            except (oci.RegistryError, oci_refs.InvalidReference) as exc:
                self._fetch_failed(
                    ctx, READ_FAILED, f"failed to determine the artifact tag for '{obj.spec.url}': {exc}"
                )
        try:
            descriptor = await client.resolve(tag)
        except oci.RegistryError as exc:
            self._fetch_failed(ctx, PULL_FAILED, f"failed to determine artifact digest: {exc}")
        return Resolved(repo.reference(tag=tag), descriptor.digest, oci_refs.revision(tag, descriptor.digest))

    def _up_to_date(self, obj: OCIRepository, ctx: ReconcileContext, resolved: Resolved) -> bool:
        spec, status = obj.spec, ctx.status
        return (
            status.artifact is not None
            and status.artifact.revision == resolved.revision
            and status.observed_ignore == spec.ignore
            and oci_refs.same_layer_selector(spec.layer_selector, status.observed_layer_selector)
        )

    async def _pull(
        self, ctx: ReconcileContext, client: oci.RegistryClient, obj: OCIRepository, resolved: Resolved
    ) -> Artifact:
        """The manifest by digest (the tag may have moved since), its layer, the artifact."""
        spec = obj.spec
        ns, name = obj.metadata.namespace or "", obj.metadata.name or ""
        try:
            manifest = await client.manifest(resolved.digest)
        except oci.RegistryError as exc:
            self._fetch_failed(ctx, PULL_FAILED, f"failed to pull artifact from '{spec.url}': {exc}")
        try:
            layer = oci_refs.select_layer(manifest.body, spec.layer_selector)
        except oci_refs.LayerError as exc:
            self._fetch_failed(ctx, LAYER_FAILED, str(exc))
        ctx.remove_condition(FETCH_FAILED)

        rel = f"{self.storage.object_dir(KIND, ns, name)}/{resolved.digest}.tar.gz"
        workdir = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="tide-oci-"))
        temp = await asyncio.to_thread(self.storage.new_temp_file, KIND, ns, name)
        try:
            if oci_refs.layer_operation(spec.layer_selector) == COPY:
                archive = await self._copy_layer(ctx, client, layer, temp)
            else:
                archive = await self._extract_layer(ctx, client, obj, layer, workdir, temp)
            try:
                await asyncio.to_thread(self.storage.commit, temp, rel, archive.digest)
            except OSError as exc:
                message = f"unable to archive artifact to storage: {exc}"
                ctx.set_condition(STORAGE_FAILED, "True", ARCHIVE_FAILED, message)
                raise ReconcileError(ARCHIVE_FAILED, message) from exc
        finally:
            await asyncio.to_thread(temp.unlink, True)
            await asyncio.to_thread(shutil.rmtree, workdir, True)
        ctx.remove_condition(STORAGE_FAILED)
        return self._stored_artifact(
            rel,
            resolved.revision,
            archive.digest,
            archive.size,
            metadata=manifest.annotations or None,
        )

    async def _copy_layer(
        self, ctx: ReconcileContext, client: oci.RegistryClient, layer: dict[str, Any], temp: Path
    ) -> Archive:
        """The layer blob as-is: its digest is the artifact's."""
        try:
            size = await client.download_blob(layer, temp, self.max_artifact_size)
        except (oci.RegistryError, OSError) as exc:
            self._fetch_failed(ctx, LAYER_FAILED, f"failed to copy layer from artifact: {exc}")
        return Archive(str(layer["digest"]), size, 1, size)

    async def _extract_layer(
        self,
        ctx: ReconcileContext,
        client: oci.RegistryClient,
        obj: OCIRepository,
        layer: dict[str, Any],
        workdir: Path,
        temp: Path,
    ) -> Archive:
        blob = workdir / "layer"
        try:
            await client.download_blob(layer, blob, self.max_artifact_size)
        except (oci.RegistryError, OSError) as exc:
            self._fetch_failed(ctx, LAYER_FAILED, f"failed to extract layer contents from artifact: {exc}")
        try:
            archive: Archive = await self.builds.run(
                oci_layer.extract_and_archive, blob, workdir / "tree", obj.spec.ignore, temp,
                self.max_artifact_size, self.max_artifact_entries,
            )  # fmt: skip
        except oci_layer.LayerExtractError as exc:
            self._fetch_failed(ctx, LAYER_FAILED, str(exc))
        except (ArtifactTooLarge, OSError) as exc:
            message = f"unable to archive artifact to storage: {exc}"
            ctx.set_condition(STORAGE_FAILED, "True", ARCHIVE_FAILED, message)
            raise ReconcileError(ARCHIVE_FAILED, message) from exc
        return archive

    async def _check_storage(self, obj: OCIRepository, ctx: ReconcileContext) -> bool:
        ok = await super()._check_storage(obj, ctx)
        if not ok:
            ctx.status.url = None
        return ok

    def _notify(
        self, obj: OCIRepository, ctx: ReconcileContext, previous: Artifact | None, recovering: bool
    ) -> None:
        """NewArtifact when the digest changed; Succeeded when it recovered from a failure."""
        artifact = ctx.status.artifact
        assert artifact is not None
        message = f"stored artifact with revision '{artifact.revision}' from '{obj.spec.url}'"
        source = (artifact.metadata or {}).get(SOURCE_ANNOTATION)
        origin = (artifact.metadata or {}).get(REVISION_ANNOTATION)
        if source and origin:
            message += f", origin source '{source}', origin revision '{origin}'"
        metadata = {"revision": artifact.revision, "digest": artifact.digest or ""}
        if previous is None or previous.digest != artifact.digest:
            ctx.event("Normal", "NewArtifact", message, metadata=metadata)
        elif recovering:
            ctx.event("Normal", SUCCEEDED_REASON, message, metadata=metadata)
