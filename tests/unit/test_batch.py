from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

import numpy as np
import orjson
import pytest

from services.rating.arena_slices import (
    RawRecord,
    RecentWindow,
    decode,
    fold,
    lua_args,
    recent_section,
    record_runs,
    touched_views,
)
from services.rating.engine import BattleColumns, EloState
from services.rating.online_elo import EloOptions, online_elo
from services.rating.packed_counts import INCREMENT
from shared.events import utc_now


def record(offset: int, partition: int = 0, **vote: object) -> RawRecord:
    body = {"vote_id": f"v{offset}", "arena": "text", "model_a": "a", "model_b": "b",
            "winner": "model_a", **vote}
    return RawRecord("podium.votes", partition, offset, orjson.dumps(body))


def test_decode_splits_good_and_dead() -> None:
    records = [
        record(0),
        RawRecord("podium.votes", 0, 1, b"not json"),
        RawRecord("podium.votes", 0, 2, None),
        record(3, winner="nobody"),
        record(4, model_b="a"),
    ]
    votes, dead = decode(records)
    assert [r.offset for r, _ in votes] == [0]
    assert [d.record.offset for d in dead] == [1, 2, 3, 4]
    assert "winner" in dead[2].reason
    letter = dead[0].to_json(now=utc_now())
    assert letter["offset"] == 1 and letter["partition"] == 0 and letter["reason"]


def test_batch_records_expand_in_order_and_a_bad_one_is_dead_whole() -> None:
    batch = orjson.dumps([{"vote_id": f"b{i}", "arena": "text", "model_a": "a", "model_b": "b",
                           "winner": w} for i, w in enumerate(["model_a", "tie", "model_b"])])
    bad = batch.replace(b'"tie"', b'"draw"')
    votes, dead = decode([RawRecord("podium.votes", 0, 7, batch),
                          RawRecord("podium.votes", 0, 8, bad)])
    assert [(r.offset, v.vote_id) for r, v in votes] == [(7, "b0"), (7, "b1"), (7, "b2")]
    assert [d.record.offset for d in dead] == [8] and "1.winner" in dead[0].reason
    [sl] = fold(votes)
    assert [b.winner for b in sl.battles] == ["model_a", "tie", "model_b"]
    assert (sl.first_offset, sl.last_offset) == (7, 7)


def test_fold_counts_every_view_and_tracks_offsets() -> None:
    votes, _ = decode([
        record(10, categories=["coding"], language="en"),
        record(11, model_a="b", model_b="a", winner="model_b"),  # same outcome, other order
        record(12, winner="tie", language="en"),
        record(13, winner="model_b", anonymous=False),  # advances the range, counts nothing
        record(5, partition=1, arena="vision"),
    ])
    slices = {(s.arena, s.partition): s for s in fold(votes)}
    text = slices[("text", 0)]
    assert (text.first_offset, text.last_offset) == (10, 13)
    assert text.increments["overall"] == Counter({"a|b|model_a": 2, "a|b|tie": 1})
    assert text.increments["coding"] == Counter({"a|b|model_a": 1})
    assert text.increments["lang:en"] == Counter({"a|b|model_a": 1, "a|b|tie": 1})
    assert slices[("vision", 1)].fence_field == "podium.votes/1"
    assert touched_views(slices.values()) == {
        "text": {"overall", "coding", "lang:en"}, "vision": {"overall"}}


def test_fold_after_drops_what_was_applied() -> None:
    votes, _ = decode([record(i) for i in range(10)])
    [rest] = fold(votes, after={("text", "podium.votes", 0): 6})
    assert (rest.first_offset, rest.last_offset) == (7, 9)
    assert rest.increments["overall"]["a|b|model_a"] == 3
    assert fold(votes, after={("text", "podium.votes", 0): 9}) == []


def test_lua_args_align_views_models_and_increments() -> None:
    votes, _ = decode([record(1, categories=["math"]), record(2, winner="tie")])
    [sl] = fold(votes)
    views, argv = lua_args(sl, 7, {"overall": {"a": 1002.5, "b": 997.5}})
    assert views == ["math", "overall"]
    assert argv[:8] == [7, "podium.votes/0", 1, 2, -1, 2, "math", "overall"]
    assert argv[-2:] == [0, 0]  # no recent-window section, no style battles
    assert argv[8:11] == [2, "a", "b"]  # the slice's models, then their increments, packed
    packed = argv[11]
    assert isinstance(packed, bytes)
    increments = np.frombuffer(packed, dtype=INCREMENT).tolist()
    assert increments == [(1, 0, 1, 0, 1), (2, 0, 1, 0, 1), (2, 0, 1, 2, 1)]
    elo = [tuple(argv[i:i + 3]) for i in range(12, len(argv) - 2, 3)]
    assert elo == [(2, "a", "1002.5"), (2, "b", "997.5")]


STYLE = {"model_a": {"tokens": 300, "headers": 2, "lists": 1, "bold": 0},
         "model_b": {"tokens": 100}}


def test_fold_keeps_style_of_counted_battles() -> None:
    votes, _ = decode([record(1, style=STYLE), record(2), record(3, style=STYLE, anonymous=False)])
    [sl] = fold(votes)
    assert [(b.style_a, b.style_b) for b in sl.battles] == [
        ((300, 2, 1, 0), (100, 0, 0, 0)), (None, None)]  # offset 3 is not counted


def test_lua_args_append_one_style_chunk_per_view() -> None:
    recs = [record(1, style=STYLE, categories=["math"]), record(2, winner="tie"),
            record(3, style=STYLE, winner="model_b")]
    votes, _ = decode(recs)
    [sl] = fold(votes)
    views, argv = lua_args(sl, 7, {"overall": {"a": 1002.5, "b": 997.5}})
    assert views == ["math", "overall"]
    assert argv[-1] == 2
    (i_math, math_chunk), (i_overall, overall_chunk) = [
        (argv[i], argv[i + 1]) for i in range(len(argv) - 6, len(argv) - 2, 2)]
    assert (i_math, i_overall) == (1, 2)
    assert isinstance(math_chunk, bytes) and isinstance(overall_chunk, bytes)
    overall = BattleColumns.from_bytes(overall_chunk)
    assert len(BattleColumns.from_bytes(math_chunk)) == 1
    assert len(overall) == 2 and overall.models == ("a", "b")
    assert overall.outcome.tolist() == [0, 1]  # model_a, model_b (the tie had no style)
    assert overall.style_a.tolist() == [[300, 2, 1, 0]] * 2
    # what precedes the style section is the usual layout
    assert argv[8:11] == [2, "a", "b"]
    assert len(argv[11]) == 4 * INCREMENT.itemsize  # type: ignore[arg-type]
    elo = [tuple(argv[i:i + 3]) for i in range(12, len(argv) - 6, 3)]
    assert elo == [(2, "a", "1002.5"), (2, "b", "997.5")]


def test_online_elo_follows_offset_order_per_view() -> None:
    recs = [record(3, winner="model_b"), record(1, categories=["math"]), record(2, winner="tie")]
    votes, _ = decode(recs)
    [sl] = fold(votes)
    elo = online_elo(sl, {"overall": {"a": 1010.0}}, EloOptions())
    expected = EloState(ratings={"a": 1010.0})
    for winner in ("model_a", "tie", "model_b"):  # offsets 1, 2, 3
        expected.apply("a", "b", winner)
    assert elo["overall"] == pytest.approx(expected.ratings)
    math_only = EloState()
    math_only.apply("a", "b", "model_a")
    assert elo["math"] == pytest.approx(math_only.ratings)


def test_fold_orders_records_like_a_stable_sort_of_the_votes() -> None:
    """fold and the screen walk runs of one record's votes sorted by (topic, partition, offset):
    the order a stable sort of each vote by its record's position gives, whatever the order the
    records came in (and however a record's votes are spread)."""
    rng = np.random.default_rng(2)
    records = [RawRecord(str(rng.choice(["t1", "t2"])), int(rng.integers(2)),
                         int(rng.integers(5)), b"") for _ in range(6)]
    winners = ["model_a", "model_b", "tie", "tie_bothbad"]
    for _ in range(50):
        votes = []
        for n in range(int(rng.integers(1, 12))):
            rec = records[int(rng.integers(len(records)))]
            body = {"vote_id": f"v{n}", "arena": str(rng.choice(["text", "vision"])),
                    "model_a": "a", "model_b": str(rng.choice(["b", "c"])),
                    "winner": winners[int(rng.integers(4))], "anonymous": bool(rng.random() > .2)}
            decoded, _ = decode([RawRecord("x", 0, 0, orjson.dumps([body] * int(rng.integers(
                1, 4))))])
            votes += [(rec, vote) for _, vote in decoded]  # a run of rec's votes
        in_order = sorted(votes, key=lambda rv: (rv[0].topic, rv[0].partition, rv[0].offset))
        assert record_runs(votes) and [
            v for rec, start, end in record_runs(votes) for v in votes[start:end]] == in_order
        folded = [(s.arena, s.topic, s.partition, s.first_offset, s.last_offset,
                   s.increments, s.battles) for s in fold(votes)]
        assert folded == [(s.arena, s.topic, s.partition, s.first_offset, s.last_offset,
                           s.increments, s.battles) for s in fold(in_order)]


HOUR = 3600
NOW = 1_800_000_000.0  # a fixed "now" (unix time) for the recent window


def at(seconds_ago: float) -> str:
    return datetime.fromtimestamp(NOW - seconds_ago, UTC).isoformat()


def test_fold_counts_recent_battles_by_the_hour_ingest_received_them() -> None:
    votes, _ = decode([record(1, received_at=at(0)), record(2, received_at=at(0), winner="tie"),
                       record(3, received_at=at(2 * HOUR), categories=["math"]),
                       record(4, received_at=at(0), anonymous=False),  # not counted
                       record(5)])  # no received_at (written before ingest stamped it)
    [sl] = fold(votes)
    hour = int(NOW) // HOUR
    assert sl.recent == {(hour, ("overall",), "a", "b"): 2,
                         (hour - 2, ("overall", "math"), "a", "b"): 1}


def test_recent_section_spreads_views_and_models_and_drops_expired_buckets() -> None:
    votes, _ = decode([record(1, received_at=at(0), categories=["math"]),
                       record(2, received_at=at(0), model_a="c"),
                       record(3, received_at=at(30 * HOUR)),  # past the 24 h window
                       record(4, received_at=at(24 * HOUR))])  # the window's oldest hour
    [sl] = fold(votes)
    window = RecentWindow(24 * HOUR, NOW)
    buckets, args = recent_section(sl, window)
    hour = int(NOW) // HOUR
    assert buckets == [("math", hour), ("overall", hour - 24), ("overall", hour)]
    assert args == [window.expire_at(hour), 2, "a", 1, "b", 1,
                    window.expire_at(hour - 24), 2, "a", 1, "b", 1,
                    window.expire_at(hour), 3, "a", 1, "b", 2, "c", 1]
    assert window.expire_at(hour - 24) > NOW >= window.expire_at(hour - 30)
    _, argv = lua_args(sl, 0, None, -1, args)
    assert argv[-2] == len(args) and argv[-2 - len(args):-2] == args
