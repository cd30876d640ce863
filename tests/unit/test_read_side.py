"""Pure pieces of the read side: row filters and groups, exports, event ids, benchmark rows."""

from __future__ import annotations

import pytest

from services.api.rank_feed import parse_event_id
from services.api.rows import RowFilter, export_json, groups, headline
from services.rating.scores import score_rows

ROWS = [
    {"model": "a", "rank": 1, "votes": 900, "score": 1300.0, "ci_low": 1290, "ci_high": 1310,
     "organization": "Acme", "country": "US", "license": "proprietary", "preview": False},
    {"model": "b", "rank": 2, "votes": 100, "score": 1250.0, "ci_low": 1200, "ci_high": 1300,
     "organization": "Lab", "country": "CN", "license": "open", "preview": True},
    {"model": "c", "rank": 3, "votes": 500, "score": 1200.0, "ci_low": 1190, "ci_high": 1210,
     "organization": "lab", "country": "CN", "license": "open", "preview": False},
    {"model": "d", "rank": 4, "votes": 500, "score": 1100.0, "ci_low": 1090, "ci_high": 1110,
     "organization": None, "country": None, "license": None, "preview": None},
]


@pytest.mark.parametrize(
    ("filters", "models"),
    [
        (RowFilter(), ["a", "b", "c", "d"]),
        (RowFilter(organization="LAB"), ["b", "c"]),
        (RowFilter(country="cn"), ["b", "c"]),
        (RowFilter(license="open"), ["b", "c"]),
        (RowFilter(preview=True), ["b"]),
        (RowFilter(preview=False), ["a", "c", "d"]),
        (RowFilter(min_votes=500), ["a", "c", "d"]),
        (RowFilter(top=2), ["a", "b"]),
        (RowFilter(country="CN", top=1), ["b"]),
    ],
)
def test_row_filters(filters: RowFilter, models: list[str]) -> None:
    kept = filters.apply(ROWS)
    assert [r["model"] for r in kept] == models
    assert [r["position"] for r in kept] == list(range(1, len(models) + 1))


def test_groups_count_places_in_the_top() -> None:
    found = groups(ROWS, "country", top=3)
    assert [(g["name"], g["best_rank"], g["models"], g["in_top"]) for g in found] == [
        ("US", 1, 1, 1), ("CN", 2, 2, 2)]
    assert headline(found, 3) == "CN models hold 2 of the top 3"
    assert headline([], 10) == "no registered group holds a place in the top 10"


def test_export_has_lmarena_shape() -> None:
    out = export_json("text/overall", ROWS[:1])
    assert out == {"text/overall": {"a": {"rating": 1300.0, "rating_q025": 1290,
                                          "rating_q975": 1310}}}


@pytest.mark.parametrize(("value", "offset"), [("0:12", 12), ("12", 12), ("0:-1", -1)])
def test_event_ids(value: str, offset: int) -> None:
    assert parse_event_id(value) == offset


@pytest.mark.parametrize("bad", ["", "1:3", "0:x", "zero", "0:-2"])
def test_bad_event_ids(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_event_id(bad)


def test_benchmark_rows_rank_by_score_and_share_rank_ub_on_ties() -> None:
    rows = score_rows({"x": {"score": 50}, "y": {"score": 70}, "z": {"score": 50}})
    assert [(r["model"], r["rank"], r["rank_ub"]) for r in rows] == [
        ("y", 1, 1), ("x", 2, 2), ("z", 3, 2)]
