"""Structured JSON logs with the reconciled object's kind, namespace, name and reconcile id."""

import json
import logging

from tide.shared.runtime.logs import JsonFormatter, object_logger


def test_object_fields_are_top_level_json(caplog) -> None:
    logger = object_logger(
        "kustomize-controller", "Kustomization", "kustomize.toolkit.fluxcd.io", "flux-system", "apps", "rid-1"
    )
    with caplog.at_level(logging.INFO, logger="tide.kustomize-controller"):
        logger.info("Reconciliation finished in %s", "1s", extra={"revision": "main@sha1:abc"})
    entry = json.loads(JsonFormatter().format(caplog.records[-1]))
    assert entry["msg"] == "Reconciliation finished in 1s"
    assert entry["level"] == "info"
    assert entry["name"] == "apps" and entry["namespace"] == "flux-system"
    assert entry["controllerKind"] == "Kustomization" and entry["controller"] == "kustomization"
    assert entry["Kustomization"] == {"name": "apps", "namespace": "flux-system"}
    assert entry["reconcileID"] == "rid-1"
    assert entry["revision"] == "main@sha1:abc"
    assert entry["ts"].endswith("Z")


def test_errors_carry_the_traceback() -> None:
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), None)
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        record.exc_info = sys.exc_info()
    entry = json.loads(JsonFormatter().format(record))
    assert entry["level"] == "error" and "ValueError: boom" in entry["error"]
