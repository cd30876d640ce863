"""The pure parts of releases (shared/releases.py): ids, reading ``?at=``, the latest release at
a time, diffs, LMArena's export shape."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from shared.releases import (
    Release,
    ReleaseSummary,
    diff,
    latest_at,
    lmarena_json,
    parse_instant,
    release_id,
)
from shared.standings import StoredStandings


def row(model: str, rank: int, score: float, votes: int = 100) -> dict[str, Any]:
    return {"model": model, "rank": rank, "rank_ub": rank, "score": score,
            "ci_low": score - 10, "ci_high": score + 10, "votes": votes, "wins": 50,
            "losses": 50, "ties": 0, "preliminary": False, "elo": score}


def release(rid: str, at: str, rows: list[dict[str, Any]]) -> Release:
    standings = StoredStandings.model_validate({
        "board": "text/overall", "arena": "text", "view": "overall", "updated_at": at,
        "models": len(rows), "votes": sum(r["votes"] for r in rows), "converged": True,
        "connected": True, "position": None, "rows": rows})
    return Release(id=rid, board="text/overall", published_at=at, methodology={},
                   standings=standings)


@pytest.mark.parametrize(("text", "expected"), [
    ("2026-12-01T10:00:00Z", datetime(2026, 12, 1, 10, tzinfo=UTC)),
    ("2026-12-01T10:00:00", datetime(2026, 12, 1, 10, tzinfo=UTC)),  # naive: UTC
    ("2026-12-01T11:00:00 01:00", datetime(2026, 12, 1, 10, tzinfo=UTC)),  # "+" as a space
    ("2026-12-01", datetime(2026, 12, 1, 23, 59, 59, 999999, tzinfo=UTC)),  # the whole day
    ("text.overall.20261201T100000Z", None),
    ("9999-12-31T23:59:59-23:59", None),  # past year 9999 in UTC: not an error
    ("", None),
])
def test_at_is_read_as_a_utc_instant(text: str, expected: datetime | None) -> None:
    assert parse_instant(text) == expected


def test_a_generated_id_names_the_board_and_the_second() -> None:
    at = datetime(2026, 12, 1, 10, 0, 5, 123, tzinfo=UTC)
    assert release_id("text/lang:zh", at) == "text.lang:zh.20261201T100005Z"


def test_the_latest_release_at_or_before_a_time() -> None:
    def summary(rid: str, at: str) -> ReleaseSummary:
        return ReleaseSummary(id=rid, board="b/v", published_at=at, updated_at=at, models=1,
                              votes=1)

    found = [summary("b", "2026-12-02T00:00:00+00:00"), summary("a", "2026-12-01T00:00:00+00:00")]
    assert latest_at(found, datetime(2026, 11, 30, tzinfo=UTC)) is None
    assert latest_at(found, datetime(2026, 12, 1, tzinfo=UTC)) == found[1]  # at: included
    assert latest_at(found, datetime(2026, 12, 1, 12, tzinfo=UTC)) == found[1]
    assert latest_at(found, datetime(2027, 1, 1, tzinfo=UTC)) == found[0]


def test_a_diff_says_who_moved_by_how_much_and_who_came_and_went() -> None:
    older = release("r1", "2026-12-01T00:00:00+00:00",
                    [row("a", 1, 1100), row("b", 2, 1050), row("c", 3, 1000), row("gone", 4, 900)])
    newer = release("r2", "2026-12-02T00:00:00+00:00",
                    [row("c", 1, 1120), row("a", 2, 1101), row("b", 3, 1040), row("new", 4, 950)])
    found = diff(older, newer)
    assert [(m.model, m.rank_from, m.rank_to, m.rank_change) for m in found.moved] == [
        ("c", 3, 1, 2), ("a", 1, 2, -1), ("b", 2, 3, -1)]
    assert found.moved[0].score_change == 120.0
    assert found.unchanged == []
    assert [e.model for e in found.new] == ["new"] and [e.model for e in found.retired] == ["gone"]
    assert found.from_release.id == "r1" and found.to_release.leader == "c"


def test_a_release_keeps_the_standings_document_byte_for_byte() -> None:
    """Extra row columns (benchmark rows' source, later additions) survive a round trip."""
    rows = [{**row("a", 1, 1100), "source": "lab"}]
    before = release("r1", "2026-12-01T00:00:00+00:00", rows)
    after = Release.model_validate_json(before.to_json())
    assert after.standings.to_json() == before.standings.to_json()
    assert b'"source":"lab"' in after.standings.to_json()


def test_the_lmarena_export_maps_the_columns() -> None:
    exported = lmarena_json("text/overall", [row("a", 1, 1100, votes=321)])
    assert exported == {"text/overall": {"a": {"rating": 1100, "rating_q025": 1090,
                                               "rating_q975": 1110, "num_battles": 321,
                                               "final_ranking": 1}}}
