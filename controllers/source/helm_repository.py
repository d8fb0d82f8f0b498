"""HelmRepository: fetch the index (conditionally), compare its digest with the stored
artifact, check and store it as fetched, report.

A reconcile where the server answers 304 Not Modified, or sends the bytes of the stored
artifact again, parses and writes nothing. `type: oci` repositories hold no artifact: they
only carry the URL and credentials their HelmCharts pull with.
"""

from __future__ import annotations

import asyncio
import functools
from dataclasses import dataclass
from typing import Any

from tide.controllers.source import helm_http, helm_index, oci
from tide.controllers.source.conditions import (
    ARTIFACT_IN_STORAGE,
    ARTIFACT_OUTDATED,
    FETCH_FAILED,
    READY,
    STORAGE_FAILED,
)
from tide.controllers.source.helm_http import RepositoryAccess, Validators
from tide.controllers.source.stored_source import StoredSourceReconciler
from tide.shared.api.meta import Artifact
from tide.shared.api.source import HelmRepository
from tide.shared.kube import secret_data
from tide.shared.runtime import ReconcileContext, Result, StalledError

KIND = "HelmRepository"
API_VERSION = "source.toolkit.fluxcd.io/v1"

AUTHENTICATION_FAILED = "AuthenticationFailed"
URL_INVALID = "URLInvalid"
INDEXATION_FAILED = "IndexationFailed"
FAILED = "Failed"

# Flux's --helm-index-max-size default.
DEFAULT_INDEX_MAX_SIZE = 50 * 1024 * 1024


class SecretMissing(Exception):
    pass


@dataclass
class _Seen:
    """The last index fetched for an object: what to send for a conditional GET."""

    url: str
    digest: str
    validators: Validators


def human_size(size: int) -> str:
    """Flux's units in the NewArtifact message (e.g. 1.2 kB)."""
    value = float(size)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{size} B"  # pragma: no cover


async def repository_access(kube: Any, repo: HelmRepository) -> RepositoryAccess:
    """Credentials (secretRef username/password) and TLS (certSecretRef) of an HTTP repository.
    Raises SecretMissing or oci.InvalidCredentials with the condition's message."""
    spec, ns = repo.spec, repo.metadata.namespace or ""
    username = password = None
    if spec.secret_ref is not None:
        data = await read_secret(kube, ns, spec.secret_ref.name)
        user_raw, pass_raw = data.get("username"), data.get("password")
        if ("username" in data or "password" in data) and not (user_raw and pass_raw):
            raise oci.InvalidCredentials(
                f"invalid '{ns}/{spec.secret_ref.name}' secret data: required fields username and password"
            )
        if user_raw and pass_raw:
            username, password = user_raw.decode(), pass_raw.decode()
    tls = None
    if spec.cert_secret_ref is not None:
        data = await read_secret(kube, ns, spec.cert_secret_ref.name, "TLS authentication secret ")
        tls = await asyncio.to_thread(
            oci.tls_context, data.get("ca.crt"), data.get("tls.crt"), data.get("tls.key"), False
        )
    return RepositoryAccess(spec.url, username, password, tls, bool(spec.pass_credentials))


async def read_secret(kube: Any, namespace: str, name: str, what: str = "secret ") -> dict[str, bytes]:
    secret = await kube.get("v1", "Secret", name, namespace)
    if secret is None:
        raise SecretMissing(f"failed to get {what}'{namespace}/{name}': secrets \"{name}\" not found")
    return secret_data(secret)


class HelmRepositoryReconciler(StoredSourceReconciler[HelmRepository]):
    model = HelmRepository
    kind = KIND
    ready_message = "stored artifact: revision '{revision}'"

    def __init__(
        self,
        *args: Any,
        index_max_size: int = DEFAULT_INDEX_MAX_SIZE,
        index_cache: helm_index.CacheSettings | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.index_max_size = index_max_size
        self.index_cache = index_cache or helm_index.CacheSettings()

    @functools.cached_property
    def _seen(self) -> dict[tuple[str, str], _Seen]:
        return {}

    async def finalize(self, obj: HelmRepository, ctx: ReconcileContext) -> None:
        self._seen.pop((obj.metadata.namespace or "", obj.metadata.name or ""), None)
        await super().finalize(obj, ctx)

    async def reconcile(self, obj: HelmRepository, ctx: ReconcileContext) -> Result:
        if obj.is_oci():
            return await self._reconcile_oci(obj, ctx)
        spec, status = obj.spec, ctx.status
        ns, name = obj.metadata.namespace or "", obj.metadata.name or ""
        if spec.url.startswith("oci://"):
            message = (
                "invalid Helm repository URL: "
                "'oci' URL scheme cannot be used with 'default' HelmRepository type"
            )
            ctx.set_condition(FETCH_FAILED, "True", URL_INVALID, message)
            raise StalledError(URL_INVALID, message)
        if not await self._check_storage(obj, ctx):
            self._seen.pop((ns, name), None)
        access = await self._access(obj, ctx)
        recovering = any(
            c.get("type") in (FETCH_FAILED, STORAGE_FAILED) and c.get("status") == "True"
            for c in ctx.stored_status.get("conditions") or []
        )

        url = helm_http.index_url(spec.url)
        seen = self._seen.get((ns, name))
        artifact = status.artifact
        validators = None
        if seen is not None and artifact is not None and seen.url == url and seen.digest == artifact.digest:
            validators = seen.validators
        temp = await asyncio.to_thread(self.storage.new_temp_file, KIND, ns, name)
        try:
            try:
                fetched = await helm_http.fetch(
                    access, url, temp, self.index_max_size, spec.timeout_seconds(), "index", validators
                )
            except helm_http.HelmHTTPError as exc:
                reason = AUTHENTICATION_FAILED if isinstance(exc, helm_http.AuthFailed) else FAILED
                self._fetch_failed(ctx, reason, f"failed to fetch Helm repository index: {exc}")
            if fetched is None or (artifact is not None and artifact.digest == fetched.digest):
                assert artifact is not None
                if fetched is not None:
                    self._seen[(ns, name)] = _Seen(url, fetched.digest, fetched.validators)
                self._ready(ctx, artifact.revision)
                if recovering:
                    ctx.event("Normal", "Succeeded", self._stored_message(artifact, spec.url))
                await self._collect_garbage(obj, ctx)
                ctx.log.debug("artifact up-to-date with remote revision: '%s'", artifact.revision)
                return Result()

            try:
                charts = await self.builds.run(helm_index.check_index, temp, fetched.digest, self.index_cache)
            except helm_index.InvalidIndex as exc:
                self._fetch_failed(ctx, INDEXATION_FAILED, str(exc))
            ctx.remove_condition(FETCH_FAILED)
            revision = fetched.digest
            message = f"new index revision '{revision}'"
            if artifact is not None:
                ctx.set_condition(ARTIFACT_OUTDATED, "True", "NewRevision", message)
            await ctx.progress(f"building artifact: {message}")
            rel = f"{self.storage.object_dir(KIND, ns, name)}/index-{revision.removeprefix('sha256:')}.yaml"
            await self._commit(ctx, temp, rel, fetched.digest)
        finally:
            await asyncio.to_thread(temp.unlink, True)

        new = self._stored_artifact(rel, revision, fetched.digest, fetched.size)
        status.artifact = new
        status.url = await asyncio.to_thread(self.storage.symlink, rel, "index.yaml")
        self._seen[(ns, name)] = _Seen(url, fetched.digest, fetched.validators)
        self._ready(ctx, revision)
        ctx.event(
            "Normal",
            "NewArtifact",
            self._stored_message(new, spec.url),
            metadata={"revision": revision, "digest": fetched.digest},
        )
        await self._collect_garbage(obj, ctx)
        ctx.log.info("stored index of %d charts, revision '%s'", charts, revision)
        return Result()

    @staticmethod
    def _stored_message(artifact: Artifact, url: str) -> str:
        return f"stored fetched index of size {human_size(artifact.size or 0)} from '{url}'"

    async def _access(self, obj: HelmRepository, ctx: ReconcileContext) -> RepositoryAccess:
        try:
            return await repository_access(ctx.kube, obj)
        except (SecretMissing, oci.InvalidCredentials) as exc:
            self._fetch_failed(ctx, AUTHENTICATION_FAILED, str(exc))

    async def _reconcile_oci(self, obj: HelmRepository, ctx: ReconcileContext) -> Result:
        """No artifact: check the URL and provider, drop what a former `default` type stored."""
        spec, status = obj.spec, ctx.status
        if status.artifact is not None or status.url:
            await self.finalize(obj, ctx)
            status.artifact = None
            status.url = None
        for stale in (ARTIFACT_IN_STORAGE, ARTIFACT_OUTDATED, FETCH_FAILED, STORAGE_FAILED):
            ctx.remove_condition(stale)
        if not spec.url.startswith("oci://"):
            message = f"URL validation failed for '{spec.url}': an OCI HelmRepository needs an oci:// URL"
            raise StalledError(URL_INVALID, message)
        try:
            oci.parse_url(spec.url, bool(spec.insecure))
        except oci.InvalidURL as exc:
            raise StalledError(URL_INVALID, f"URL validation failed for '{spec.url}': {exc}") from exc
        provider = spec.provider or "generic"
        if provider != "generic":
            raise StalledError(
                "UnsupportedProvider",
                f"provider '{provider}' is not supported by Tide: use provider 'generic' with "
                "spec.secretRef (a kubernetes.io/dockerconfigjson secret)",
            )
        ctx.set_condition(READY, "True", "Succeeded", "Helm repository is ready")
        return Result()
