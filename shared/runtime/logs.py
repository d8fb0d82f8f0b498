"""Structured JSON logs (Flux's zap format: level, ts, msg, then the object's fields)."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import MutableMapping
from datetime import UTC, datetime
from typing import Any

FIELDS = "tide_fields"
"""LogRecord attribute carrying fields whose names LogRecord reserves (name, ...)."""
_RESERVED = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}
_LEVEL_NAMES = {
    logging.DEBUG: "debug",
    logging.INFO: "info",
    logging.WARNING: "warn",
    logging.ERROR: "error",
    logging.CRITICAL: "error",
}
LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "error": logging.ERROR, "trace": logging.DEBUG}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "level": _LEVEL_NAMES.get(record.levelno, record.levelname.lower()),
            "ts": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _RESERVED and not key.startswith("_") and key != FIELDS:
                entry[key] = value
        entry.update(getattr(record, FIELDS, None) or {})
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def setup_logging(level: str = "info", encoding: str = "json") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if encoding == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(LEVELS.get(level, logging.INFO))
    for noisy in ("aiohttp.access",):
        logging.getLogger(noisy).setLevel(logging.WARNING)


class ObjectLogger(logging.LoggerAdapter[logging.Logger]):
    """A logger that adds the reconciled object's fields (kind, namespace, name, reconcileID)."""

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, MutableMapping[str, Any]]:
        fields = dict(self.extra or {})
        fields.update(kwargs.get("extra") or {})
        kwargs["extra"] = {FIELDS: fields}
        return msg, kwargs


def object_logger(
    controller: str, kind: str, group: str, namespace: str, name: str, reconcile_id: str
) -> ObjectLogger:
    return ObjectLogger(
        logging.getLogger(f"tide.{controller}"),
        {
            "controller": kind.lower(),
            "controllerGroup": group,
            "controllerKind": kind,
            kind: {"name": name, "namespace": namespace},
            "namespace": namespace,
            "name": name,
            "reconcileID": reconcile_id,
        },
    )
