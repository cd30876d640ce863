"""The worker's fast apply steps (fold, online Elo, voter-screen decision) against the
straightforward oracle of tests/support/apply_oracle.py on random batches: the same slices
(counts, offsets, recent window, battles), the same Elo floats bit for bit, the same screen
statistics, flags, marks and kept votes, and the same apply_batch.lua arguments."""

from __future__ import annotations

import struct
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from services.rating.arena_slices import (
    ArenaSlice,
    RawRecord,
    RecentWindow,
    decode,
    fold,
    lua_args,
    recent_section,
)
from services.rating.online_elo import EloOptions, online_elo
from services.rating.screen_decision import ScreenState, decide
from services.rating.voter_stats import ScreenOptions, VoterStats
from tests.support import apply_oracle

MODELS = ["m-a", "m-b", "m-c", "m-d", "zeta", "alpha"]
ARENAS = ["text", "vision"]
START = datetime(2026, 12, 2, 9, 30, tzinfo=UTC)

vote_strategy = st.fixed_dictionaries({
    "arena": st.sampled_from(ARENAS),
    "pair": st.lists(st.sampled_from(MODELS), min_size=2, max_size=2, unique=True),
    "winner": st.sampled_from(["model_a", "model_b", "tie", "tie_bothbad"]),
    "categories": st.lists(st.sampled_from(["coding", "math", "hard_prompts"]), max_size=3),
    "language": st.sampled_from([None, "en", "zh"]),
    "anonymous": st.booleans().map(lambda b: b or None),  # mostly anonymous
    "excluded": st.sampled_from([None, None, None, "duplicate_prompt", "quarantined"]),
    "voter": st.sampled_from([None, "v1", "v2", "v3"]),
    "style": st.booleans(),
    "hours": st.sampled_from([None, 0, 0, 1, 30]),
})


def vote_doc(i: int, spec: dict[str, Any]) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "vote_id": f"v{i}", "arena": spec["arena"], "model_a": spec["pair"][0],
        "model_b": spec["pair"][1], "winner": spec["winner"], "categories": spec["categories"],
        "language": spec["language"], "voter": spec["voter"],
        "anonymous": spec["anonymous"] is not None, "excluded": spec["excluded"],
    }
    if spec["hours"] is not None:
        doc["received_at"] = (START - timedelta(hours=spec["hours"])).isoformat()
    if spec["style"]:
        doc["style"] = {"model_a": {"tokens": i, "bold": 1}, "model_b": {"tokens": 2 * i}}
    return doc


@st.composite
def batches(draw: st.DrawFn) -> list[tuple[RawRecord, Any]]:
    """Records of 1-4 votes of one arena each, on 2 partitions, offsets in any order."""
    specs = draw(st.lists(vote_strategy, min_size=1, max_size=60))
    records: list[RawRecord] = []
    at = 0
    while at < len(specs):
        size = draw(st.integers(1, 4))
        arena = specs[at]["arena"]
        group = [{**s, "arena": arena} for s in specs[at:at + size]]
        partition = draw(st.integers(0, 1))
        offset = draw(st.integers(0, 12))
        body = [vote_doc(at + j, s) for j, s in enumerate(group)]
        records.append(RawRecord("podium.votes", partition, offset,
                                 orjson.dumps(body if size > 1 else body[0])))
        at += size
    votes, dead = decode(records)
    assert not dead
    return votes


def slice_state(sl: ArenaSlice) -> tuple[Any, ...]:
    return (sl.arena, sl.topic, sl.partition, sl.first_offset, sl.last_offset,
            list(sl.increments.items()), list(sl.recent.items()), sl.battles)


def float_bits(ratings: dict[str, dict[str, float]]) -> dict[str, dict[str, bytes]]:
    return {view: {m: struct.pack("<d", r) for m, r in moved.items()}
            for view, moved in ratings.items()}


@settings(max_examples=300, deadline=None)
@given(votes=batches(), after=st.dictionaries(
    st.tuples(st.sampled_from(ARENAS), st.just("podium.votes"), st.integers(0, 1)),
    st.integers(-1, 12), max_size=4) | st.none())
def test_fold_matches_the_oracle(votes: list[Any], after: Any) -> None:
    """Counts (in the order views and fields first appear), offsets, recent window and
    battles, with and without ``after``."""
    fast, slow = fold(votes, after), apply_oracle.fold(votes, after)
    assert [slice_state(s) for s in fast] == [slice_state(s) for s in slow]


@settings(max_examples=300, deadline=None)
@given(votes=batches(), start=st.dictionaries(
    st.sampled_from(["overall", "coding", "lang:en"]),
    st.dictionaries(st.sampled_from(MODELS), st.floats(900, 1100), max_size=4), max_size=3),
    k=st.sampled_from([4.0, 7.3, 1.7]))
def test_online_elo_matches_elo_state_bit_for_bit(
    votes: list[Any], start: dict[str, dict[str, float]], k: float
) -> None:
    now = START.timestamp()
    for fast, slow in zip(fold(votes), apply_oracle.fold(votes), strict=True):
        elo = online_elo(fast, start, EloOptions(k))
        assert float_bits(elo) == float_bits(apply_oracle.online_elo(slow, start, EloOptions(k)))
        buckets, recent = recent_section(fast, RecentWindow(86_400, now))
        assert (buckets, recent) == recent_section(slow, RecentWindow(86_400, now))
        assert lua_args(fast, 3, elo, 5, recent) == lua_args(slow, 3, elo, 5, recent)


def screened(votes: list[Any], arena: str) -> list[Any]:
    return [(r, v) for r, v in votes if v.arena == arena and v.voter is not None
            and v.anonymous and v.excluded is None and not v.released]


@settings(max_examples=300, deadline=None)
@given(votes=batches(), flagged=st.sets(st.sampled_from(["v1", "v2", "v3"]), max_size=1),
       fence=st.integers(-1, 6), threshold=st.sampled_from([0.5, 2.0, 9.2]),
       p=st.sampled_from([None, 0.01, 0.3, 0.5, 0.97]))
def test_screen_decision_matches_the_oracle(
    votes: list[Any], flagged: set[str], fence: int, threshold: float, p: float | None
) -> None:
    """Statistics (stored bytes), emptied voters, flags with their evidence, marked and kept
    votes and fences, from stored statistics and flags, with replays below a fence."""
    options = ScreenOptions(threshold=threshold)
    now = START + timedelta(minutes=5)
    stored = {"v1": VoterStats(4, {"m-a": [1.5, 3, 3, 1.2], "zeta": [0.2, 1, 0, 0.5]}).dump(),
              "v2": VoterStats(1, {"m-c": [0.4, 1, 1, 0.5]}).dump()}

    def state() -> ScreenState:
        return ScreenState(set(flagged), {"podium.votes/0": fence},
                           {v: VoterStats.load(stored.get(v)) for v in ("v1", "v2", "v3")},
                           set(stored))

    def win_probability(arena: str, a: str, b: str) -> float | None:
        return p

    for arena in ARENAS:
        mine = screened(votes, arena)
        fast_state, slow_state = state(), state()
        fast = decide(arena, mine, fast_state, win_probability, options, now)
        slow = apply_oracle.decide(arena, mine, slow_state, win_probability, options, now)
        assert fast.stats == slow.stats and fast.emptied == slow.emptied
        assert list(fast.flags.items()) == list(slow.flags.items())
        assert fast.marked == slow.marked and dict(fast.kept) == dict(slow.kept)
        assert fast.fences == slow.fences and fast_state.flagged == slow_state.flagged
        assert ({v: s.dump() for v, s in fast_state.stats.items()}
                == {v: s.dump() for v, s in slow_state.stats.items()})
