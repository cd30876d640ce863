"""The sampling report's pure parts: which hourly buckets the recent window sums, and shares
over the window's battles against uniform."""

from __future__ import annotations

import pytest

from services.api.sampling_report import _recent, window_buckets

HOUR = 3600


def test_the_window_covers_the_hour_of_now_minus_the_window_through_the_current_hour() -> None:
    now = 500_000 * HOUR + 1800  # half past an hour
    buckets = window_buckets(24 * HOUR, now)
    assert (buckets.start, buckets.stop) == (500_000 - 24, 500_001)  # 25 buckets, 24.5 h
    on_the_hour = window_buckets(24 * HOUR, 500_000 * HOUR)
    assert (on_the_hour.start, on_the_hour.stop) == (500_000 - 24, 500_001)


def test_recent_shares_count_the_windows_battles_of_the_boards_models() -> None:
    rows = [{"model": "a", "votes": 100, "organization": "Acme", "license": "open"},
            {"model": "b", "votes": 50, "organization": "Acme", "license": "proprietary"},
            {"model": "c", "votes": 50, "organization": "Zed"}]
    battles = {"a": 3, "c": 1, "gone": 2}  # a model the board no longer lists is left out
    recent = _recent(rows, {"a": 0.5, "b": 0.3, "c": 0.2}, battles, 86_400,
                     window_buckets(86_400, 500_000 * HOUR))
    assert recent["window_s"] == 86_400 and recent["since"] == (500_000 - 24) * HOUR
    assert recent["battles"] == 3
    assert [(m["name"], m["battles"], m["share"]) for m in recent["models"]] == [
        ("a", 3, 0.75), ("c", 1, 0.25), ("b", 0, 0.0)]
    assert {g["name"]: (g["battles"], g["uniform_share"]) for g in recent["organizations"]} == {
        "Acme": (3, pytest.approx(2 / 3, abs=1e-6)), "Zed": (1, pytest.approx(1 / 3, abs=1e-6))}
    assert {g["name"]: g["battles"] for g in recent["licenses"]} == {
        "open": 3, "unknown": 1, "proprietary": 0}
