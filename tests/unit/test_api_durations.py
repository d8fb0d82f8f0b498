"""Flux durations: Go duration strings limited to ms, s, m and h."""

import pytest

from tide.shared.api.meta import format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30),
        ("1m", 60),
        ("5m0s", 300),
        ("1h30m", 5400),
        ("1.5h", 5400),
        ("500ms", 0.5),
        ("2h0m0s", 7200),
        ("0s", 0),
        ("1m30s500ms", 90.5),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "1", "1d", "1 m", "-1m", "m", "1.m", "1m ", "10us", "P1D"])
def test_invalid_durations_are_rejected(text: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)


@pytest.mark.parametrize("seconds", [0.25, 1, 59, 60, 90, 3600, 5400, 86400])
def test_format_duration_round_trips(seconds: float) -> None:
    assert parse_duration(format_duration(seconds)) == pytest.approx(seconds)


def test_format_duration_is_go_like() -> None:
    assert format_duration(90) == "1m30s"
    assert format_duration(3600) == "1h"
    assert format_duration(0.5) == "500ms"
    assert format_duration(0) == "0s"


def test_go_forms_for_flags_and_the_cli() -> None:
    assert parse_duration("0", go=True) == 0
    assert parse_duration(" 10us ", go=True) == pytest.approx(1e-5)
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration("soon", go=True)
    assert [format_duration(s, go=True) for s in (0, 0.5, 1.5, 60, 90, 7200, 5400)] == [
        "0s",
        "500ms",
        "1.5s",
        "1m0s",
        "1m30s",
        "2h0m0s",
        "1h30m0s",
    ]
