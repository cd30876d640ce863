"""Rank changes classified by what they mean, and the hysteresis of repeated moves."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from services.rating.engine.significance import RankMoves
from services.rating.standings import rank_changes
from shared.events import RankChange, SourcePosition


def board(*rows: tuple[str, float, float]) -> list[dict[str, Any]]:
    """Rows from (model, score, half CI width), ranked the way the engine ranks them: score
    order, and rank_ub = 1 + #models whose lower bound is above this one's upper bound."""
    ordered = sorted(rows, key=lambda r: -r[1])
    out = []
    for i, (model, score, half) in enumerate(ordered):
        ub = 1 + sum(1 for _, s, h in ordered if s - h > score + half)
        out.append({"model": model, "rank": i + 1, "rank_ub": ub, "score": score,
                    "ci_low": score - half, "ci_high": score + half, "votes": 100})
    return out


def kinds(old: list[dict[str, Any]], new: list[dict[str, Any]],
          moves: RankMoves | None = None) -> dict[str, str]:
    return {m.model: m.significance
            for m in (moves or RankMoves()).moves("text/overall", old, new, 0.0)}


def test_a_swap_inside_overlapping_intervals_is_a_mere_reordering() -> None:
    old = board(("a", 1300, 10), ("b", 1299, 10), ("c", 1200, 10))
    new = board(("a", 1299, 10), ("b", 1300, 10), ("c", 1200, 10))
    assert kinds(old, new) == {"a": "reordered", "b": "reordered"}


def test_a_swap_whose_intervals_separate_at_once_is_separated() -> None:
    old = board(("a", 1300, 10), ("b", 1295, 10), ("c", 1200, 10))
    new = board(("a", 1280, 4), ("b", 1300, 4), ("c", 1200, 10))
    moves = {m.model: m for m in RankMoves().moves("text/overall", old, new, 0.0)}
    assert moves["b"].significance == "separated" and moves["b"].passed == ("a",)
    # a's published rank moved (b is now apart above it): that is the stronger kind
    assert moves["a"].significance == "published"
    assert (moves["a"].old or {})["rank_ub"] == 1 and moves["a"].new["rank_ub"] == 2


def test_a_gradual_overtake_is_announced_when_the_intervals_separate() -> None:
    moves = RankMoves()
    behind = board(("a", 1300, 5), ("b", 1280, 5))  # a apart above b: settled a > b
    close = board(("a", 1290, 10), ("b", 1291, 10))  # b passes a, overlapping: quiet
    apart = board(("a", 1285, 4), ("b", 1295, 4))  # now apart: the overtake is confirmed
    moves.moves("text/overall", [], behind, 0.0)
    # b gains on a: its rank (UB) 2 -> 1 is published; passing a inside the intervals is not
    assert kinds(behind, close, moves) == {"a": "reordered", "b": "published"}
    got = {m.model: m for m in moves.moves("text/overall", close, apart, 1.0)}
    assert got["b"].significance == "separated" and got["b"].passed == ("a",)
    assert got["a"].significance == "published"  # its rank (UB) 1 -> 2
    # staying apart is no news; separating again the same way neither
    assert kinds(apart, apart, moves) == {}


def test_a_move_of_the_published_rank_alone_is_published() -> None:
    old = board(("a", 1300, 30), ("b", 1250, 30))
    new = board(("a", 1300, 10), ("b", 1250, 10))  # intervals tighten: b's rank (UB) 1 -> 2
    assert kinds(old, new) == {"b": "published"}


def test_a_model_new_on_the_board_is_published_and_unchanged_ones_are_left_out() -> None:
    old = board(("a", 1300, 10), ("b", 1100, 10))
    new = board(("a", 1300, 10), ("b", 1100, 10), ("c", 1105, 10))
    got = kinds(old, new)
    assert got["c"] == "published" and "a" not in got
    assert got["b"] == "reordered"  # pushed down a place by the newcomer, nothing published
    apart = board(("a", 1300, 10), ("b", 1100, 10), ("c", 1200, 10))
    assert kinds(old, apart)["b"] == "published"  # ... and below one more apart model: (UB) 3


def test_one_move_each_way_per_window() -> None:
    moves = RankMoves(window_s=60)
    wide = board(("a", 1300, 30), ("b", 1250, 30))  # b's rank (UB) 1
    tight = board(("a", 1300, 10), ("b", 1250, 10))  # b's rank (UB) 2
    seen = []
    for t, (old, new) in enumerate([(wide, tight), (tight, wide), (wide, tight),
                                    (tight, wide)]):
        [b] = moves.moves("text/overall", old, new, float(t))
        seen.append(b.damped)
    assert seen == [False, False, True, True]  # 1 -> 2, 2 -> 1, then repeats
    assert not moves.moves("text/overall", wide, tight, 2.0 + 60)[0].damped  # window passed
    assert not moves.moves("text/other", tight, wide, 2.5)[0].damped  # boards are apart


def test_no_window_damps_nothing() -> None:
    moves = RankMoves(window_s=0)
    wide, tight = board(("a", 1300, 30), ("b", 1250, 30)), board(("a", 1300, 10), ("b", 1250, 10))
    assert not any(moves.moves("x", wide, tight, 0.0)[0].damped for _ in range(3))


def test_rank_changes_carry_the_kind_and_the_damping() -> None:
    moves = RankMoves(window_s=60)
    at = SourcePosition(topic="t", partition=0, offset=1)
    wide, tight = board(("a", 1300, 30), ("b", 1250, 30)), board(("a", 1300, 10), ("b", 1250, 10))
    first = rank_changes("text/overall", wide, tight, datetime(2026, 12, 2, tzinfo=UTC), at, moves)
    again = rank_changes("text/overall", wide, tight, datetime(2026, 12, 2, 0, 0, 1, tzinfo=UTC),
                         at, moves)
    assert [(c.model, c.significance, c.damped, c.old_rank_ub, c.rank_ub) for c in first] == [
        ("b", "published", False, 1, 2)]
    assert [c.damped for c in again] == [True]


@pytest.mark.parametrize(("significance", "damped", "heard"), [
    ("published", False, {"published", "separated", "any"}),
    ("separated", False, {"separated", "any"}),
    ("reordered", False, {"any"}),
    ("published", True, {"any"}),
])
def test_who_hears_what(significance: str, damped: bool, heard: set[str]) -> None:
    change = RankChange.model_validate({
        "board": "text/overall", "model": "a", "old_rank": 2, "new_rank": 1,
        "old_score": 1.0, "new_score": 2.0, "rank_ub": 1, "votes": 10,
        "timestamp": "2026-12-02T00:00:00Z",
        "position": {"topic": "t", "partition": 0, "offset": 1},
        "significance": significance, "damped": damped})
    assert {lvl for lvl in ("published", "separated", "any") if change.heard_at(lvl)} == heard


def test_records_from_before_the_kinds_read_as_reordered() -> None:
    old = RankChange.model_validate_json(
        b'{"board":"text/overall","model":"a","old_rank":2,"new_rank":1,"old_score":1.0,'
        b'"new_score":2.0,"rank_ub":1,"votes":10,"timestamp":"2026-12-02T00:00:00Z",'
        b'"position":{"topic":"t","partition":0,"offset":1}}')
    assert old.significance == "reordered" and not old.damped and old.old_rank_ub is None
