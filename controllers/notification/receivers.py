"""Receivers: webhooks that make sources and Kustomizations reconcile now.

Pure part: the webhook path, and per-type validation of a request (signatures and tokens always
compared with hmac.compare_digest). I/O part: ReceiverServer on --receiverAddr, which finds the
Receiver by path, validates, and merge-patches `reconcile.fluxcd.io/requestedAt` on each resource.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import parse_qs

from aiohttp import web
from prometheus_client import Counter

from tide.controllers.notification.events import parse_listen_address
from tide.shared import boundedjson
from tide.shared.kube import secret_data
from tide.shared.runtime.conditions import READY, condition_of

log = logging.getLogger("tide.notification.receivers")

MAX_RECEIVER_BODY = 3 << 20
REQUESTED_AT = "reconcile.fluxcd.io/requestedAt"
RECEIVER_TYPES = (
    "generic",
    "generic-hmac",
    "github",
    "gitlab",
    "bitbucket",
    "harbor",
    "dockerhub",
    "quay",
    "gcr",
    "nexus",
    "acr",
    "cdevents",
)
DEFAULT_API_VERSIONS = {
    "GitRepository": "source.toolkit.fluxcd.io/v1",
    "OCIRepository": "source.toolkit.fluxcd.io/v1",
    "HelmRepository": "source.toolkit.fluxcd.io/v1",
    "HelmChart": "source.toolkit.fluxcd.io/v1",
    "Bucket": "source.toolkit.fluxcd.io/v1",
    "ExternalArtifact": "source.toolkit.fluxcd.io/v1",
    "Kustomization": "kustomize.toolkit.fluxcd.io/v1",
    "HelmRelease": "helm.toolkit.fluxcd.io/v2",
    "ImageRepository": "image.toolkit.fluxcd.io/v1beta2",
    "ImagePolicy": "image.toolkit.fluxcd.io/v1beta2",
    "ImageUpdateAutomation": "image.toolkit.fluxcd.io/v1beta2",
    "ArtifactGenerator": "source.extensions.fluxcd.io/v1beta1",
}
_HMAC_ALGORITHMS = {"sha1": hashlib.sha1, "sha256": hashlib.sha256, "sha512": hashlib.sha512}


def webhook_path(token: str, name: str, namespace: str) -> str:
    return "/hook/" + hashlib.sha256(f"{token}{name}{namespace}".encode()).hexdigest()


@dataclass
class Verdict:
    """The outcome of validating one request: status 200 means act on it."""

    status: int
    message: str
    event: str = ""
    act: bool = True

    @property
    def ok(self) -> bool:
        return self.status < 300


def _deny(message: str) -> Verdict:
    return Verdict(401, message, act=False)


def _bad(message: str, event: str = "") -> Verdict:
    return Verdict(400, message, event=event, act=False)


def _equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def check_signature(
    header: str, body: bytes, key: str, allowed: tuple[str, ...] = ("sha1", "sha256", "sha512")
) -> bool:
    """`<algo>=<hex hmac>` as GitHub, Bitbucket Server and Flux's generic-hmac send it."""
    algo, sep, digest = header.strip().partition("=")
    algo = algo.lower()
    if not sep or algo not in allowed:
        return False
    expected = hmac.new(key.encode(), body, _HMAC_ALGORITHMS[algo]).hexdigest()
    return _equal(digest.lower(), expected)


def _event_allowed(event: str, events: list[str]) -> bool:
    return not events or any(event.lower() == e.lower() for e in events)


def _json_body(body: bytes) -> Any:
    try:
        return boundedjson.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None


def _nested_too_deep(body: bytes) -> bool:
    """A JSON body deeper than any webhook sends: a 400 before any receiver type reads it."""
    try:
        boundedjson.loads(body)
    except boundedjson.JSONTooDeep:
        return True
    except (ValueError, UnicodeDecodeError):
        pass  # not JSON: each receiver type decides
    return False


def _github_payload(body: bytes, content_type: str) -> Any:
    if content_type.startswith("application/x-www-form-urlencoded"):
        form = parse_qs(body.decode(errors="replace"))
        return _json_body(form.get("payload", [""])[0].encode())
    return _json_body(body)


def validate_request(
    receiver_type: str,
    token: str,
    headers: Mapping[str, str],
    body: bytes,
    events: list[str] | None = None,
) -> Verdict:
    """Decide whether a webhook call is authentic and wanted. `headers` must be case-insensitive
    (aiohttp's CIMultiDict, or a dict with canonical names in tests)."""
    events = events or []
    h = {k.lower(): v for k, v in headers.items()}

    if receiver_type == "generic":
        return Verdict(200, "generic receiver")

    if receiver_type == "generic-hmac":
        if not check_signature(h.get("x-signature", ""), body, token):
            return _deny("the X-Signature header is missing or invalid")
        return Verdict(200, "signature valid")

    if receiver_type == "github":
        if "x-hub-signature-256" in h:
            valid = check_signature(h["x-hub-signature-256"], body, token, ("sha256",))
        else:
            valid = check_signature(h.get("x-hub-signature", ""), body, token, ("sha1",))
        if not valid:
            return _deny("the GitHub signature header is missing or invalid")
        event = h.get("x-github-event", "")
        if _github_payload(body, h.get("content-type", "application/json")) is None:
            return _bad("unable to parse GitHub payload", event)
        if event == "ping":
            return Verdict(200, "pong", event=event, act=False)
        if not event:
            return _bad("the X-GitHub-Event header is missing")
        if not _event_allowed(event, events):
            return _bad(f"the GitHub event '{event}' is not authorised", event)
        return Verdict(200, f"handling GitHub event: {event}", event=event)

    if receiver_type == "gitlab":
        if not _equal(h.get("x-gitlab-token", ""), token):
            return _deny("the X-Gitlab-Token header value does not match the receiver token")
        event = h.get("x-gitlab-event", "")
        if not _event_allowed(event, events):
            return _bad(f"the GitLab event '{event}' is not authorised", event)
        return Verdict(200, f"handling GitLab event: {event}", event=event)

    if receiver_type == "bitbucket":
        if not check_signature(h.get("x-hub-signature", ""), body, token):
            return _deny("the Bitbucket server signature header is missing or invalid")
        event = h.get("x-event-key", "")
        if event == "diagnostics:ping":
            return Verdict(200, "pong", event=event, act=False)
        if not _event_allowed(event, events):
            return _bad(f"the Bitbucket server event '{event}' is not authorised", event)
        return Verdict(200, f"handling Bitbucket server event: {event}", event=event)

    if receiver_type == "harbor":
        if not _equal(h.get("authorization", ""), token):
            return _deny("the Harbor Authorization header value does not match the receiver token")
        return Verdict(200, "handling Harbor event")

    if receiver_type == "nexus":
        signature = h.get("x-nexus-webhook-signature", "")
        expected = hmac.new(token.encode(), body, hashlib.sha1).hexdigest()
        if not signature or not _equal(signature.lower(), expected):
            return _deny("the Nexus signature is missing or invalid")
        payload = _json_body(body)
        if not isinstance(payload, dict):
            return _bad("cannot decode Nexus webhook payload")
        return Verdict(200, f"handling Nexus event from {payload.get('repositoryName', '')}")

    if receiver_type in ("dockerhub", "quay", "acr"):
        payload = _json_body(body)
        if not isinstance(payload, dict):
            return _bad(f"cannot decode {receiver_type} webhook payload")
        return Verdict(200, f"handling {receiver_type} event")

    if receiver_type == "cdevents":
        event = h.get("ce-type", "")
        if not event:
            return _bad("the Ce-Type header is missing")
        if _json_body(body) is None:
            return _bad("cannot decode CDEvent payload", event)
        if not _event_allowed(event, events):
            return _bad(f"the CDEvent '{event}' is not authorised", event)
        return Verdict(200, f"handling CDEvent: {event}", event=event)

    if receiver_type == "gcr":
        # Needs the Google token check (async); see validate_gcr_claims / ReceiverServer.
        return _bad("gcr receivers are validated with Google's token info")

    return _bad(f"receiver type '{receiver_type}' not supported")


WEBHOOKS = Counter(
    "tide_receiver_requests_total",
    "Webhook calls to Receivers, by HTTP status answered.",
    ["code"],
)
GOOGLE_TOKENINFO = "https://oauth2.googleapis.com/tokeninfo"


async def google_tokeninfo(token: str, url: str = GOOGLE_TOKENINFO) -> Mapping[str, Any]:
    """Claims of a Google-signed ID token, checked by Google's tokeninfo endpoint."""
    import aiohttp

    timeout = aiohttp.ClientTimeout(total=10)
    async with (
        aiohttp.ClientSession(timeout=timeout) as session,
        session.get(url, params={"id_token": token}) as resp,
    ):
        if resp.status != 200:
            raise ValueError(f"tokeninfo answered {resp.status}")
        claims = await resp.json(content_type=None)
    if not isinstance(claims, dict):
        raise ValueError("tokeninfo answer is not a JSON object")
    return claims


GOOGLE_ISSUERS = ("accounts.google.com", "https://accounts.google.com")
GCR_SECRET_KEYS = ("audience", "email")


def bearer_token(authorization: str) -> str:
    scheme, _, token = authorization.strip().partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def _gcr_config_missing(audience: str, email: str) -> Verdict | None:
    if audience and email:
        return None
    return _deny("the receiver Secret must set 'audience' and 'email' for gcr receivers")


def validate_gcr_claims(claims: Mapping[str, Any], audience: str, email: str) -> Verdict:
    """Claims of a Google-signed OIDC token from a Pub/Sub push: issuer, the audience and the
    verified service account email the Receiver's Secret names (`audience`, `email`). Google signs
    tokens for any audience and any account, so both are required (CVE-2026-40109)."""
    if missing := _gcr_config_missing(audience, email):
        return missing
    if claims.get("iss") not in GOOGLE_ISSUERS:
        return _deny("the token was not issued by Google")
    if not _equal(str(claims.get("aud", "")), audience):
        return _deny("the token audience does not match the receiver's audience")
    if str(claims.get("email_verified", "")).lower() != "true" or not claims.get("email"):
        return _deny("the token has no verified email claim")
    if not _equal(str(claims["email"]), email):
        return _deny("the token email does not match the receiver's service account email")
    return Verdict(200, "handling GCR event")


def requested_at_value(now: datetime | None = None) -> str:
    """Go's metav1.Now().String() shape, e.g. `2026-11-26 04:07:14.123456 +0000 UTC`."""
    now = now or datetime.now(UTC)
    return now.strftime("%Y-%m-%d %H:%M:%S.%f +0000 UTC")


def resource_api_version(resource: Mapping[str, Any]) -> str:
    if resource.get("apiVersion"):
        return str(resource["apiVersion"])
    kind = str(resource.get("kind", ""))
    if kind not in DEFAULT_API_VERSIONS:
        raise ValueError(f"apiVersion must be specified for kind '{kind}'")
    return DEFAULT_API_VERSIONS[kind]


def label_selector(match_labels: Mapping[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(match_labels.items()))


class ResourceFilter:
    """spec.resourceFilter: a CEL expression over `res` (each resource) and `req` (the request
    body as JSON, when it is JSON); resources for which it is not true are left alone."""

    def __init__(self, source: str, body: bytes = b""):
        import celpy

        env = celpy.Environment()
        try:
            self.program = env.program(env.compile(source))
        except Exception as exc:  # celpy raises its own parse errors
            raise ValueError(f"invalid resourceFilter '{source}': {exc}") from None
        self.source = source
        payload = _json_body(body) if body else None
        self.request = celpy.json_to_cel(payload if payload is not None else {})

    def allows(self, resource: Mapping[str, Any]) -> bool:
        import celpy

        try:
            result = self.program.evaluate({"res": celpy.json_to_cel(dict(resource)), "req": self.request})
        except Exception as exc:
            log.warning("resourceFilter '%s' failed: %s", self.source, exc)
            return False
        return isinstance(result, celpy.celtypes.BoolType) and bool(result)


class Kube(Protocol):
    async def get(
        self, api_version: str, kind: str, name: str, namespace: str | None = None
    ) -> dict[str, Any] | None: ...

    async def list(
        self, api_version: str, kind: str, namespace: str | None = None, label_selector: str | None = None
    ) -> list[dict[str, Any]]: ...

    async def patch_merge(
        self, api_version: str, kind: str, name: str, namespace: str | None, patch: dict[str, Any]
    ) -> dict[str, Any]: ...


def is_serving(obj: Mapping[str, Any]) -> bool:
    """Ready, or being reconciled again (Ready=Unknown) with its published path: a periodic
    reconcile must not make the webhook answer 404. Ready=False (no token) does not serve."""
    ready = condition_of(obj, READY)
    return ready is not None and ready.get("status") in ("True", "Unknown")


ReceiverSource = Callable[[], Awaitable[list[dict[str, Any]]]]
GcrVerifier = Callable[[str], Awaitable[Mapping[str, Any]]]


class ReceiverServer:
    """Listens on --receiverAddr; POST /hook/<digest>."""

    def __init__(
        self,
        address: str,
        kube: Kube,
        receivers: ReceiverSource | None = None,
        no_cross_namespace_refs: bool = False,
        gcr_verifier: GcrVerifier | None = None,
        max_body: int = MAX_RECEIVER_BODY,
    ):
        self.host, self.port = parse_listen_address(address, 9292)
        self.kube = kube
        self.receivers = receivers or self._list_receivers
        self.no_cross_namespace_refs = no_cross_namespace_refs
        self.gcr_verifier = gcr_verifier
        self.max_body = max_body
        self._runner: web.AppRunner | None = None
        self.on_annotated: Callable[[dict[str, Any], str], None] | None = None

    async def _list_receivers(self) -> list[dict[str, Any]]:
        return await self.kube.list("notification.toolkit.fluxcd.io/v1", "Receiver")

    def app(self) -> web.Application:
        app = web.Application(client_max_size=self.max_body)
        app.router.add_post("/hook/{digest}", self.handle)
        return app

    async def find(self, path: str) -> list[dict[str, Any]]:
        found = []
        for receiver in await self.receivers():
            published = str((receiver.get("status") or {}).get("webhookPath", ""))
            if (
                published
                and _equal(published, path)
                and not (receiver.get("spec") or {}).get("suspend")
                and is_serving(receiver)
            ):
                found.append(receiver)
        return found

    async def handle(self, request: web.Request) -> web.Response:
        response = await self._handle(request)
        WEBHOOKS.labels(str(response.status)).inc()
        return response

    async def _handle(self, request: web.Request) -> web.Response:
        if request.content_length is not None and request.content_length > self.max_body:
            return web.Response(status=413, text="request body too large\n")
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return web.Response(status=413, text="request body too large\n")
        receivers = await self.find(request.path)
        if not receivers:
            return web.Response(status=404, text="receiver not found\n")
        if _nested_too_deep(body):
            return web.Response(status=400, text="request body nested too deeply\n")
        status, message = 200, ""
        for receiver in receivers:
            verdict = await self.validate(receiver, request, body)
            meta = receiver["metadata"]
            if not verdict.ok:
                log.warning(
                    "receiver %s/%s rejected a request: %s", meta["namespace"], meta["name"], verdict.message
                )
                status, message = max(status, verdict.status), verdict.message
                continue
            if not verdict.act:
                message = verdict.message
                continue
            log.info("receiver %s/%s: %s", meta["namespace"], meta["name"], verdict.message)
            errors = await self.request_reconcile(receiver, body)
            if errors:
                status, message = max(status, 400), "; ".join(errors)
        return web.Response(status=status, text=(message + "\n") if message else "")

    async def secret(self, receiver: Mapping[str, Any]) -> dict[str, str] | None:
        """The Receiver Secret's values (`token`; `audience` and `email` for gcr)."""
        ref = (receiver.get("spec") or {}).get("secretRef") or {}
        if not ref.get("name"):
            return None
        secret = await self.kube.get("v1", "Secret", ref["name"], receiver["metadata"]["namespace"])
        return {key: value.decode(errors="replace") for key, value in secret_data(secret).items()}

    async def validate(self, receiver: Mapping[str, Any], request: web.Request, body: bytes) -> Verdict:
        spec = receiver.get("spec") or {}
        values = await self.secret(receiver)
        token = (values or {}).get("token")
        if values is None or token is None:
            return _deny("unable to read the receiver token")
        if spec.get("type") == "gcr":
            return await self._validate_gcr(
                request, body, values.get("audience", ""), values.get("email", "")
            )
        return validate_request(
            str(spec.get("type", "")), token, request.headers, body, spec.get("events") or []
        )

    async def _validate_gcr(self, request: web.Request, body: bytes, audience: str, email: str) -> Verdict:
        if missing := _gcr_config_missing(audience, email):
            return missing  # before asking Google about a token nothing could accept
        bearer = bearer_token(request.headers.get("Authorization", ""))
        if not bearer or self.gcr_verifier is None:
            return _deny("the Authorization header is missing or malformed")
        try:
            claims = await self.gcr_verifier(bearer)
        except Exception as exc:
            return _deny(f"cannot verify the GCR token: {exc}")
        verdict = validate_gcr_claims(claims, audience, email)
        if verdict.ok and not isinstance(_json_body(body), dict):
            return _bad("cannot decode GCR webhook payload")
        return verdict

    async def request_reconcile(self, receiver: Mapping[str, Any], body: bytes = b"") -> list[str]:
        """Annotate every resource the Receiver names (and its resourceFilter keeps); return the
        errors (one per resource)."""
        namespace = receiver["metadata"]["namespace"]
        filter_source = (receiver.get("spec") or {}).get("resourceFilter")
        resource_filter: ResourceFilter | None = None
        if filter_source:
            try:
                resource_filter = ResourceFilter(str(filter_source), body)
            except ValueError as exc:
                return [str(exc)]
        value = requested_at_value()
        patch = {"metadata": {"annotations": {REQUESTED_AT: value}}}
        errors: list[str] = []
        targets: list[tuple[str, str, str, str]] = []
        for resource in (receiver.get("spec") or {}).get("resources") or []:
            kind, name = str(resource.get("kind", "")), str(resource.get("name", ""))
            ns = resource.get("namespace") or namespace
            if self.no_cross_namespace_refs and ns != namespace:
                errors.append(
                    f"cannot reconcile {kind} '{ns}/{name}': cross-namespace references are disabled "
                    "(--no-cross-namespace-refs)"
                )
                continue
            try:
                api_version = resource_api_version(resource)
            except ValueError as exc:
                errors.append(str(exc))
                continue
            if name == "*":
                selector = resource.get("matchLabels") or {}
                if not selector:
                    errors.append(f"{kind}/{ns}/*: matchLabels is required with name '*'")
                    continue
                for obj in await self.kube.list(api_version, kind, ns, label_selector(selector)):
                    if resource_filter is None or resource_filter.allows(obj):
                        targets.append((api_version, kind, obj["metadata"]["name"], ns))
            elif resource_filter is not None:
                found = await self.kube.get(api_version, kind, name, ns)
                if found is None:
                    errors.append(f"unable to read {kind} '{ns}/{name}': not found")
                elif resource_filter.allows(found):
                    targets.append((api_version, kind, name, ns))
            else:
                targets.append((api_version, kind, name, ns))

        async def annotate(api_version: str, kind: str, name: str, ns: str) -> None:
            try:
                await self.kube.patch_merge(api_version, kind, name, ns, patch)
                log.info("resource %s/%s.%s annotated", kind, name, ns)
                if self.on_annotated is not None:
                    self.on_annotated(dict(receiver), f"{kind}/{ns}/{name}")
            except Exception as exc:
                errors.append(f"unable to annotate {kind} '{ns}/{name}': {exc}")

        await asyncio.gather(*(annotate(*t) for t in targets))
        return errors

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port).start()
        if self.port == 0:
            self.port = self._runner.addresses[0][1]
        log.info("receiver server listening on %s:%d", self.host, self.port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
