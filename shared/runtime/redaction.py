"""Values read from Secrets never reach a log line, an Event or a status: they are masked."""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import quote

MASK = "*****"
MIN_SECRET_LENGTH = 4
"""Shorter values are not masked: masking `ab` everywhere would garble messages and hide nothing."""


def secret_forms(values: Iterable[str]) -> tuple[str, ...]:
    """The values (and their URL-encoded forms, as they appear in URLs), longest first."""
    forms: set[str] = set()
    for value in values:
        value = value.strip()
        if len(value) >= MIN_SECRET_LENGTH:
            forms.update((value, quote(value, safe=""), quote(value, safe="/:@")))
    return tuple(sorted(forms, key=len, reverse=True))


def redact(text: str, secrets: Iterable[str]) -> str:
    """text with every secret value (see secret_forms) replaced by *****."""
    for form in secret_forms(secrets):
        text = text.replace(form, MASK)
    return text
