"""Helm's release Secrets read natively: decode, latest revision, Flux's snapshot and digest, unlock;
what a reconcile lists of them."""

from __future__ import annotations

import base64
import gzip
import json

import pytest
from helm_fixtures import RECORDED_RELEASE_SECRET, helm_test_hook, release_json, release_secret, stored

from tide.controllers.helm.go_encoding import GoStruct, go_json
from tide.controllers.helm.storage import (
    ReconcileStorage,
    ReleaseDecodeError,
    ReleaseStorage,
    StoredRelease,
    decode_release,
    digest_matches,
    latest_release,
    observation,
    release_digest,
    release_from_secret,
    snapshot,
    unlocked_secret,
)
from tide.controllers.helm.values import config_digest
from tide.shared.api.helm import Filter


def test_observation_of_an_empty_release_matches_fluxs_digest_vector():
    # helm-controller TestDigest: Observation{Name: "foo"}.
    empty = StoredRelease(GoStruct(name="foo"), {})
    assert release_digest(empty) == "sha256:f1498f27a16a09cd7e1ee610d924df065c03d30035638babc95dd9a8d412ce4d"


def test_release_round_trips_through_helms_encoding():
    release = release_json(config={"b": 1, "a": {"z": "<&>"}})
    again = decode_release(base64.b64decode(release_secret(release)["data"]["release"]))
    assert again == release
    assert list(again) == list(release)  # Go struct order kept


def test_uncompressed_release_data_is_read_too():
    raw = base64.b64encode(json.dumps({"name": "x", "version": 2}).encode())
    assert decode_release(raw)["version"] == 2


@pytest.mark.parametrize(
    "data",
    [
        b"!!!not base64",
        base64.b64encode(b"\x1f\x8b\x08garbage"),
        base64.b64encode(b"[1, 2]"),
        base64.b64encode(b"{}"),
    ],
)
def test_hostile_release_data_is_refused(data):
    with pytest.raises(ReleaseDecodeError):
        decode_release(data)


def test_latest_is_the_highest_revision_of_that_release():
    secrets = [
        release_secret(release_json(version=v, status=s))
        for v, s in [(1, "superseded"), (10, "deployed"), (9, "superseded")]
    ]
    secrets.append(release_secret(release_json(name="other", version=11)))
    secrets.append({**release_secret(release_json(version=12)), "type": "Opaque"})
    latest = latest_release(secrets, "app")
    assert latest is not None and latest.version == 10


def test_observation_leaves_test_hooks_out_so_running_tests_keeps_the_digest():
    untested = stored(hooks=[helm_test_hook("smoke")])
    tested = stored(hooks=[helm_test_hook("smoke", "Succeeded")])
    assert release_digest(untested) == release_digest(tested)
    assert observation(untested)["hooks"] is None


def test_observation_writes_go_json_in_struct_order_with_float64_values():
    obs = observation(stored(config={"replicas": 3, "big": 12345678901234567890}), oci_digest="sha256:abc")
    text = go_json(obs)
    assert text.startswith('{"name":"app","version":1,"info":{"first_deployed":')
    assert '"config":{"big":12345678901234567000,"replicas":3}' in text
    assert (
        '"chartMetadata":{"name":"demo","version":"1.0.0","description":"A chart","apiVersion":"v2",' in text
    )
    assert text.endswith(',"namespace":"apps","ociDigest":"sha256:abc"}')


def test_digest_changes_with_the_release_and_the_oci_digest():
    base = stored()
    assert release_digest(base) != release_digest(stored(version=2))
    assert release_digest(base) != release_digest(stored(config={"a": 1}))
    assert release_digest(base) != release_digest(base, "sha256:abc")


def test_snapshot_is_fluxs_history_entry():
    release = stored(config={"replicas": 3}, hooks=[helm_test_hook("smoke", "Failed")])
    snap = snapshot(release, action="install", oci_digest="sha256:1234")
    assert snap.model_dump(by_alias=True, exclude_none=True) == {
        "apiVersion": "v2",
        "digest": release_digest(release, "sha256:1234"),
        "name": "app",
        "namespace": "apps",
        "version": 1,
        "status": "deployed",
        "chartName": "demo",
        "chartVersion": "1.0.0",
        "appVersion": "2.0",
        "configDigest": config_digest({"replicas": 3}),
        "firstDeployed": "2026-11-30T10:00:00Z",
        "lastDeployed": "2026-11-30T10:00:00Z",
        "ociDigest": "sha256:1234",
        "action": "install",
    }
    assert digest_matches(snap, release)
    assert not digest_matches(snap, stored(version=2))


def test_test_hooks_follow_the_filters():
    release = stored(
        hooks=[helm_test_hook("a", "Succeeded"), helm_test_hook("b", "Failed"), helm_test_hook("c")]
    )
    assert set(release.test_hooks()) == {"a", "b", "c"}
    assert set(release.test_hooks([Filter(name="b", exclude=True)])) == {"a", "c"}
    assert set(release.test_hooks([Filter(name="a")])) == {"a"}
    hook = release.test_hooks()["a"]
    assert (hook.phase, hook.last_started, hook.last_completed) == (
        "Succeeded",
        "2026-11-30T10:01:00Z",
        "2026-11-30T10:01:02Z",
    )


def test_unlock_marks_a_pending_release_failed_as_helm_writes_it():
    pending = stored(status="pending-install")
    assert pending.is_pending
    secret = unlocked_secret(pending, now=1700000000)
    assert secret["metadata"]["labels"] == {
        "name": "app",
        "owner": "helm",
        "status": "failed",
        "version": "1",
        "modifiedAt": "1700000000",
    }
    assert secret["metadata"]["resourceVersion"] == "1"  # the write fails if Helm moved on meanwhile
    unlocked = release_from_secret(secret)
    assert (unlocked.status, unlocked.info["description"]) == (
        "failed",
        "Release unlocked from stale 'pending-install' state",
    )
    assert unlocked.release["manifest"] == pending.release["manifest"]
    inner = gzip.decompress(base64.b64decode(base64.b64decode(secret["data"]["release"])))
    assert json.loads(inner)["info"]["status"] == "failed"


def test_a_secret_written_by_the_real_helm():
    release = release_from_secret(RECORDED_RELEASE_SECRET)
    assert (release.name, release.namespace, release.version, release.status) == (
        "demo",
        "rec-target",
        1,
        "deployed",
    )
    assert release.config == {"greeting": "<hi & bye>", "ratio": 0.5, "replicas": 2, "tags": ["a", "b"]}
    assert {name: hook.phase for name, hook in release.test_hooks().items()} == {"demo-smoke": "Succeeded"}
    # Go's encoding/json, as reproduced for Flux's digest, writes Helm's release byte for byte.
    raw = gzip.decompress(base64.b64decode(base64.b64decode(RECORDED_RELEASE_SECRET["data"]["release"])))
    assert go_json(release.release).encode() == raw
    snap = snapshot(release)
    assert snap.config_digest == config_digest(release.config)
    assert digest_matches(snap, release)
    assert snap.first_deployed == "2026-11-30T16:48:11Z"


class ListingClient:
    """The Secrets of one storage namespace, counting the lists a reconcile makes."""

    def __init__(self, secrets: list[dict]) -> None:
        self.secrets = secrets
        self.lists = 0
        self.gets: list[str] = []

    async def list(self, api_version, kind, namespace, label_selector=None):
        self.lists += 1
        return list(self.secrets)

    async def get(self, api_version, kind, name, namespace):
        self.gets.append(name)
        return next((s for s in self.secrets if s["metadata"]["name"] == name), None)

    async def replace(self, secret):
        self.secrets = [s for s in self.secrets if s["metadata"]["name"] != secret["metadata"]["name"]]
        self.secrets.append(secret)
        return secret


async def test_a_reconcile_lists_storage_again_only_after_something_wrote_it():
    client = ListingClient([release_secret(release_json(version=1, status="pending-install"))])
    storage = ReconcileStorage(client, "apps")  # type: ignore[arg-type]
    first = await storage.latest("app")
    assert first is not None and await storage.latest("app") is first and client.lists == 1
    await storage.unlock(first)  # the controller wrote it
    assert (await storage.latest("app")).status == "failed" and client.lists == 2
    client.secrets.append(release_secret(release_json(version=2, status="deployed")))
    assert (await storage.latest("app")).version == 1  # Helm wrote it: unseen until forgotten
    storage.forget()
    assert (await storage.latest("app")).version == 2 and client.lists == 3
    await storage.history("app")  # a history is always listed, and is the latest known after it
    await storage.latest("app")
    assert client.lists == 4


async def test_plain_storage_lists_every_time():
    client = ListingClient([release_secret(release_json(version=1))])
    storage = ReleaseStorage(client, "apps")  # type: ignore[arg-type]
    await storage.latest("app")
    client.secrets.append(release_secret(release_json(version=2)))
    assert (await storage.latest("app")).version == 2 and client.lists == 2


async def test_the_release_an_action_stored_is_read_by_name():
    client = ListingClient([release_secret(release_json(version=1, status="deployed"))])
    storage = ReconcileStorage(client, "apps")  # type: ignore[arg-type]
    assert (await storage.latest("app")).version == 1 and client.lists == 1
    storage.forget()  # Helm upgrades: v2
    client.secrets.append(release_secret(release_json(version=2, status="deployed")))
    stored = await storage.stored_after("app", 1)
    assert stored.version == 2 and client.gets == ["sh.helm.release.v1.app.v2"] and client.lists == 1
    assert await storage.latest("app") is stored and client.lists == 1  # the loop's next observation
    storage.forget()  # Helm failed before storing anything: v3 is not there, a list says so
    assert await storage.stored_after("app", 2) is None and client.lists == 2
