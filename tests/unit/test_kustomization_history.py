"""status.history as Flux keeps it: newest first, one entry per (build digest, outcome), five at most."""

from __future__ import annotations

from tide.controllers.kustomize.history import MAX_HISTORY, upsert_history


def test_new_digest_goes_first_and_the_list_keeps_five() -> None:
    history: list = []
    for i in range(7):
        history = upsert_history(
            history, f"sha256:{i}", f"t{i}", "1s", "ReconciliationSucceeded", {"revision": f"r{i}"}
        )
    assert [e["digest"] for e in history] == ["sha256:6", "sha256:5", "sha256:4", "sha256:3", "sha256:2"]
    assert len(history) == MAX_HISTORY
    assert history[0] == {
        "digest": "sha256:6",
        "firstReconciled": "t6",
        "lastReconciled": "t6",
        "lastReconciledDuration": "1s",
        "lastReconciledStatus": "ReconciliationSucceeded",
        "totalReconciliations": 1,
        "metadata": {"revision": "r6"},
    }


def test_same_digest_and_outcome_updates_its_entry_and_moves_it_first() -> None:
    history = upsert_history([], "sha256:a", "t1", "1s", "ReconciliationSucceeded", {"revision": "r1"})
    history = upsert_history(history, "sha256:b", "t2", "2s", "ReconciliationSucceeded", {"revision": "r2"})
    history = upsert_history(history, "sha256:a", "t3", "3s", "ReconciliationSucceeded", {"revision": "r1"})
    assert [e["digest"] for e in history] == ["sha256:a", "sha256:b"]
    assert history[0]["firstReconciled"] == "t1"
    assert history[0]["lastReconciled"] == "t3"
    assert history[0]["lastReconciledDuration"] == "3s"
    assert history[0]["totalReconciliations"] == 2


def test_a_different_outcome_is_a_new_entry() -> None:
    history = upsert_history([], "sha256:a", "t1", "1s", "ReconciliationSucceeded", {"revision": "r1"})
    history = upsert_history(history, "sha256:a", "t2", "5m0s", "HealthCheckFailed", {"revision": "r1"})
    assert [(e["digest"], e["lastReconciledStatus"]) for e in history] == [
        ("sha256:a", "HealthCheckFailed"),
        ("sha256:a", "ReconciliationSucceeded"),
    ]
    assert history[1]["totalReconciliations"] == 1
