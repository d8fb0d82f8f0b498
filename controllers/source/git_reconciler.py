"""GitRepository: list refs, fetch if moved, verify, include, archive, store, report.

A reconcile where the remote ref still points at the stored artifact's commit (and the
spec's ignore/include/sparse/submodule settings are unchanged) is one ref listing.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from tide.controllers.source import builder, git, refs
from tide.controllers.source.builder import IncludeCopy, IncludeCopyError
from tide.controllers.source.conditions import (
    ARCHIVE_FAILED,
    ARTIFACT_OUTDATED,
    AUTHENTICATION_FAILED,
    FETCH_FAILED,
    GIT_OPERATION_FAILED,
    SOURCE_VERIFIED,
    STORAGE_FAILED,
)
from tide.controllers.source.proxy import Proxy
from tide.controllers.source.refs import Target
from tide.controllers.source.stored_source import StoredSourceReconciler
from tide.controllers.source.tarball import ArtifactTooLarge
from tide.controllers.source.verify import VerificationError, describe, normalise_mode, verify
from tide.shared.api.meta import Artifact
from tide.shared.api.source import GitRepository
from tide.shared.artifact import TooManyEntries
from tide.shared.kube import secret_data
from tide.shared.runtime import ReconcileContext, ReconcileError, Result, StalledError
from tide.shared.runtime.conditions import SUCCEEDED_REASON
from tide.shared.runtime.kind_controller import KindController

KIND = "GitRepository"
API_VERSION = "source.toolkit.fluxcd.io/v1"

INCLUDE_UNAVAILABLE = "IncludeUnavailable"


def _dump(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, list):
        return [_dump(v) for v in value]
    return value.model_dump(mode="json", by_alias=True, exclude_none=True)


def _safe_subpath(path: str | None, what: str) -> PurePosixPath:
    p = PurePosixPath((path or ".").strip())
    if p.is_absolute() or ".." in p.parts:
        raise StalledError(
            "InvalidIncludePath", f"invalid {what} '{path}': must be a relative path inside the artifact"
        )
    return p


@dataclass
class Include:
    name: str
    artifact: Artifact
    from_path: PurePosixPath
    to_path: PurePosixPath


class GitRepositoryReconciler(StoredSourceReconciler[GitRepository]):
    model = GitRepository
    reports_progress = True  # ctx.while_progressing around its slow steps
    kind = KIND
    ready_message = "stored artifact for revision '{revision}'"

    def setup(self, controller: KindController) -> None:
        """A new artifact of a GitRepository reconciles the GitRepositories that include it."""
        informer = controller.informer
        if informer is None:  # start() creates the kind's informer before it calls setup()
            raise RuntimeError("GitRepository setup before its informer exists")

        def on_event(event_type: str, obj: dict[str, Any], old: dict[str, Any] | None) -> None:
            if event_type != "MODIFIED" or old is None:
                return
            digest = ((obj.get("status") or {}).get("artifact") or {}).get("digest")
            if digest == ((old.get("status") or {}).get("artifact") or {}).get("digest"):
                return
            meta = obj.get("metadata") or {}
            for other in informer.items():
                other_meta = other.get("metadata") or {}
                if other_meta.get("namespace") != meta.get("namespace"):
                    continue
                includes = (other.get("spec") or {}).get("include") or []
                if any((i.get("repository") or {}).get("name") == meta.get("name") for i in includes):
                    controller.enqueue(other_meta.get("namespace") or "", other_meta.get("name") or "")

        informer.add_handler(on_event)

    @staticmethod
    def _check_supported(obj: GitRepository) -> None:
        """spec.provider other than generic (and so spec.serviceAccountName) means workload
        identity or a GitHub App: refused, rather than fetching without the credentials asked for."""
        provider = obj.spec.effective_provider()
        if provider != "generic":
            account = obj.spec.service_account_name
            raise StalledError(
                "UnsupportedProvider",
                f"provider '{provider}'"
                + (f" with serviceAccountName '{account}'" if account else "")
                + " is not supported by Tide yet: nothing was fetched; use provider 'generic' with "
                "spec.secretRef",
            )

    # -- the story --------------------------------------------------------------------------

    async def reconcile(self, obj: GitRepository, ctx: ReconcileContext) -> Result:
        spec, status = obj.spec, ctx.status
        ns, name = obj.metadata.namespace or "", obj.metadata.name or ""
        self._check_supported(obj)
        await self._check_storage(obj, ctx)
        auth = await self._auth(obj, ctx)
        includes = await self._includes(obj, ctx)

        timeout = spec.timeout_seconds()
        try:
            # Off the loop: an https client loads the system CA store, ssh writes key files.
            remote = await asyncio.to_thread(git.Remote, spec.url, auth, timeout)
        except git.GitError as exc:
            self._fetch_failed(ctx, exc.reason, f"failed to configure the Git client: {exc}")
        started = time.perf_counter()
        try:
            target = await ctx.while_progressing(
                None, self._run(ctx, timeout, asyncio.to_thread, self._resolve, remote, obj)
            )
            if self._up_to_date(obj, ctx, target, includes):
                self._ready(ctx, status.artifact.revision)
                await self._collect_garbage(obj, ctx)
                ctx.log.debug("artifact up-to-date with remote revision: '%s'", status.artifact.revision)
                return Result()
            wanted = target.ref or target.want
            ctx.mark_reconciling(f"building artifact: new upstream revision for '{wanted}'")
            workdir = Path(tempfile.mkdtemp(prefix="tide-checkout-"))
            temp = await asyncio.to_thread(self.storage.new_temp_file, KIND, ns, name)
            try:
                options = git.CheckoutOptions(
                    sparse=spec.sparse_checkout or [],
                    recurse_submodules=bool(spec.recurse_submodules),
                    max_entries=self.max_artifact_entries,
                )
                # Without includes, sparse checkout or submodules the artifact is written from
                # the fetched objects; the checkout on disk is skipped.
                direct = None
                if not includes and not spec.sparse_checkout and not spec.recurse_submodules:
                    direct = builder.DirectArchive(
                        spec.ignore, temp, self.max_artifact_size, self.max_artifact_entries
                    )
                resolved = time.perf_counter()
                checked_out, archived_direct = await ctx.while_progressing(None, self._run(
                    ctx, timeout, self.builds.run, builder.checkout,
                    spec.url, auth, timeout, target, workdir / "tree", options, direct,
                ))  # fmt: skip
                checkout = await asyncio.to_thread(checked_out.to_checkout)
                fetched = time.perf_counter()
                revision = refs.revision(target, checkout.commit)
                if status.artifact is None or status.artifact.revision != revision:
                    ctx.set_condition(
                        ARTIFACT_OUTDATED, "True", "NewRevision", f"new upstream revision '{revision}'"
                    )
                ctx.remove_condition(FETCH_FAILED)
                await self._verify(obj, ctx, checkout)
                archiving = time.perf_counter()
                artifact = await self._archive(
                    obj, ctx, workdir / "tree", includes, checkout.commit, revision, temp, archived_direct
                )
                archived = time.perf_counter()
            finally:
                await asyncio.to_thread(temp.unlink, True)
                await asyncio.to_thread(shutil.rmtree, workdir, True)
        finally:
            await asyncio.to_thread(remote.close)

        previous = status.artifact
        status.artifact = artifact
        status.included_artifacts = [i.artifact for i in includes] or None
        status.observed_ignore = spec.ignore
        status.observed_recurse_submodules = spec.recurse_submodules
        status.observed_include = spec.include
        status.observed_sparse_checkout = spec.sparse_checkout
        self._ready(ctx, artifact.revision)
        if previous is None or previous.revision != artifact.revision or previous.digest != artifact.digest:
            subject = (
                checkout.message.strip().splitlines()[0] if checkout.message.strip() else checkout.commit
            )
            ctx.event(
                "Normal",
                "NewArtifact",
                f"stored artifact for commit '{subject}'",
                metadata={"revision": artifact.revision, "digest": artifact.digest or ""},
            )
        await self._collect_garbage(obj, ctx)
        ctx.log.info(
            "stored artifact for revision '%s' (%s/%s) in %.2fs: ls-remote %.2fs, fetch+checkout %.2fs, "
            "archive %.2fs",
            artifact.revision, ns, name, time.perf_counter() - started, resolved - started,
            fetched - resolved, archived - archiving,
        )  # fmt: skip
        return Result()

    # -- steps ------------------------------------------------------------------------------

    async def _run(self, ctx: ReconcileContext, limit: float, runner: Any, fn: Any, *args: Any) -> Any:
        """Blocking Git work (in a thread or a build worker via runner), bounded by spec.timeout;
        errors become conditions."""
        try:
            return await asyncio.wait_for(runner(fn, *args), limit)
        except TimeoutError:
            self._fetch_failed(
                ctx,
                GIT_OPERATION_FAILED,
                f"failed to checkout and determine revision: timeout after {limit:g}s",
            )
        except refs.InvalidSemver as exc:
            self._fetch_failed(ctx, GIT_OPERATION_FAILED, f"failed to checkout and determine revision: {exc}")
        except refs.RefNotFound as exc:
            self._fetch_failed(
                ctx,
                GIT_OPERATION_FAILED,
                f"failed to checkout and determine revision: unable to clone "
                f"'{git.redact(getattr(args[0], 'url', args[0]))}': {exc}",
            )
        except git.GitError as exc:
            self._fetch_failed(ctx, exc.reason, f"failed to checkout and determine revision: {exc}")
        except TooManyEntries as exc:
            self._fetch_failed(ctx, "GitOperationFailed", f"failed to checkout and determine revision: {exc}")
        raise AssertionError("unreachable")

    @staticmethod
    def _resolve(remote: git.Remote, obj: GitRepository) -> Target:
        ref = obj.spec.ref
        if ref is not None and ref.commit:
            return refs.choose(ref, None)
        listing = remote.ls_remote(refs.ref_prefixes(ref))
        return refs.choose(ref, listing)

    async def _secret(
        self, ctx: ReconcileContext, namespace: str, name: str, reason: str, condition: str
    ) -> dict[str, bytes]:
        secret = await ctx.kube.get("v1", "Secret", name, namespace)
        if secret is None:
            message = f"failed to get secret '{namespace}/{name}': secrets \"{name}\" not found"
            ctx.set_condition(condition, "True" if condition != SOURCE_VERIFIED else "False", reason, message)
            raise ReconcileError(reason, message)
        return secret_data(secret)

    async def _auth(self, obj: GitRepository, ctx: ReconcileContext) -> git.GitAuth:
        spec, ns = obj.spec, obj.metadata.namespace or ""
        scheme = spec.url.split("://", 1)[0]
        data: dict[str, bytes] = {}
        if spec.secret_ref is not None:
            data = await self._secret(ctx, ns, spec.secret_ref.name, AUTHENTICATION_FAILED, FETCH_FAILED)
        try:
            auth = git.GitAuth.from_secret(data, scheme)
        except git.InvalidAuth as exc:
            ctx.set_condition(FETCH_FAILED, "True", exc.reason, str(exc))
            raise ReconcileError(exc.reason, str(exc)) from exc
        if spec.proxy_secret_ref is not None:
            proxy = await self._secret(
                ctx, ns, spec.proxy_secret_ref.name, AUTHENTICATION_FAILED, FETCH_FAILED
            )
            auth.proxy = Proxy.from_secret_data(proxy)
            if auth.proxy is None:
                message = f"invalid proxy secret '{ns}/{spec.proxy_secret_ref.name}': key 'address' not found"
                ctx.set_condition(FETCH_FAILED, "True", AUTHENTICATION_FAILED, message)
                raise ReconcileError(AUTHENTICATION_FAILED, message)
        return auth

    async def _includes(self, obj: GitRepository, ctx: ReconcileContext) -> list[Include]:
        out: list[Include] = []
        ns = obj.metadata.namespace or ""
        for inc in obj.spec.include or []:
            name = inc.repository.name
            from_path = _safe_subpath(inc.from_path, "fromPath")
            to_path = _safe_subpath(inc.to_path or name, "toPath")
            other = await ctx.kube.get(API_VERSION, KIND, name, ns)
            artifact_doc = ((other or {}).get("status") or {}).get("artifact")
            if other is None or not artifact_doc:
                message = f"could not get resource for include '{name}': " + (
                    "not found" if other is None else "no artifact available"
                )
                ctx.set_condition(
                    INCLUDE_UNAVAILABLE, "True", "NotFound" if other is None else "NoArtifact", message
                )
                raise ReconcileError(INCLUDE_UNAVAILABLE, message)
            artifact = Artifact.model_validate(artifact_doc)
            if not await asyncio.to_thread(self.storage.verify, artifact.path, artifact.digest):
                message = f"artifact for include '{name}' is not in storage (yet)"
                ctx.set_condition(INCLUDE_UNAVAILABLE, "True", "NoArtifact", message)
                raise ReconcileError(INCLUDE_UNAVAILABLE, message)
            out.append(Include(name, artifact, from_path, to_path))
        ctx.remove_condition(INCLUDE_UNAVAILABLE)
        return out

    def _up_to_date(
        self, obj: GitRepository, ctx: ReconcileContext, target: Target, includes: list[Include]
    ) -> bool:
        spec, status = obj.spec, ctx.status
        artifact = status.artifact
        if artifact is None or target.commit is None:
            return False
        if artifact.revision != refs.revision(target, target.commit):
            return False
        if status.observed_ignore != spec.ignore:
            return False
        if bool(status.observed_recurse_submodules) != bool(spec.recurse_submodules):
            return False
        if (status.observed_sparse_checkout or None) != (spec.sparse_checkout or None):
            return False
        if _dump(status.observed_include) != _dump(spec.include):
            return False
        stored = {(a.revision, a.digest) for a in status.included_artifacts or []}
        if stored != {(i.artifact.revision, i.artifact.digest) for i in includes}:
            return False
        if spec.verify is not None:
            verified = ctx.get_condition(SOURCE_VERIFIED)
            if not verified or verified.get("status") != "True":
                return False
            if status.source_verification_mode != normalise_mode(spec.verify.mode):
                return False
        return True

    async def _verify(self, obj: GitRepository, ctx: ReconcileContext, checkout: git.Checkout) -> None:
        spec = obj.spec
        if spec.verify is None:
            ctx.remove_condition(SOURCE_VERIFIED)
            ctx.status.source_verification_mode = None
            return
        keys = await self._secret(
            ctx,
            obj.metadata.namespace or "",
            spec.verify.secret_ref.name,
            "VerificationError",
            SOURCE_VERIFIED,
        )
        try:
            results = await asyncio.to_thread(
                verify, spec.verify.mode, keys, checkout.commit_object, checkout.tag_object
            )
        except VerificationError as exc:
            ctx.set_condition(SOURCE_VERIFIED, "False", exc.reason, exc.message)
            raise ReconcileError(exc.reason, exc.message) from exc
        ctx.set_condition(SOURCE_VERIFIED, "True", SUCCEEDED_REASON, describe(results))
        ctx.status.source_verification_mode = normalise_mode(spec.verify.mode)

    async def _archive(
        self,
        obj: GitRepository,
        ctx: ReconcileContext,
        tree: Path,
        includes: list[Include],
        commit: str,
        revision: str,
        temp: Path,
        direct: builder.DirectArchived | None,
    ) -> Artifact:
        """Includes copied in, ignore rules applied, tar.gz built (in a build worker, unless
        built from the fetched objects already) and stored."""
        ns, name = obj.metadata.namespace or "", obj.metadata.name or ""
        rel = f"{self.storage.object_dir(KIND, ns, name)}/{commit}.tar.gz"
        copies = [
            IncludeCopy(i.name, self.storage.local_path(i.artifact.path), i.from_path, i.to_path)
            for i in includes
        ]
        try:
            if direct is not None and direct.too_large is not None:
                raise ArtifactTooLarge(direct.too_large)
            if direct is not None and direct.store_failed is not None:
                raise OSError(direct.store_failed)
            if direct is not None and direct.archive is not None:
                archive = direct.archive
            else:
                archive = await self.builds.run(
                    builder.archive, tree, copies, obj.spec.ignore, temp, self.max_artifact_size
                )
            await asyncio.to_thread(self.storage.commit, temp, rel, archive.digest)
        except IncludeCopyError as exc:
            raise ReconcileError(INCLUDE_UNAVAILABLE, str(exc)) from exc
        except ArtifactTooLarge as exc:
            message = f"failed to archive revision '{revision}': {exc}"
            ctx.set_condition(STORAGE_FAILED, "True", ARCHIVE_FAILED, message)
            raise ReconcileError(ARCHIVE_FAILED, message) from exc
        except OSError as exc:
            message = f"failed to store artifact for revision '{revision}': {exc}"
            ctx.set_condition(STORAGE_FAILED, "True", ARCHIVE_FAILED, message)
            raise ReconcileError(ARCHIVE_FAILED, message) from exc
        ctx.remove_condition(STORAGE_FAILED)
        return self._stored_artifact(rel, revision, archive.digest, archive.size)
