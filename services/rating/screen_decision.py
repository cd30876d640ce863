"""The voter screen's decision for one arena's votes of a batch, in pure code: which votes are
quarantined, which voters are newly flagged (with the evidence), and what is to be stored.
No I/O: ``services/rating/voter_screen.py`` loads what it needs and saves what it decides."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

import orjson

from services.rating.arena_slices import RawRecord, record_runs
from services.rating.voter_stats import ScreenOptions, Side, VoterStats, sides
from shared.events import Vote

# (arena, model x, model y) -> P(x beats y) on the arena's overall board, None when unknown
WinProbability = Callable[[str, str, str], float | None]


class FlagPosition(NamedTuple):
    """Where a voter was flagged (its evidence's ``position`` and ``vote_id``)."""

    fence_field: str  # "topic/partition"
    offset: int  # of the record that crossed
    vote_id: str  # the vote that crossed ("" when the evidence has none)

    @classmethod
    def of(cls, evidence: bytes) -> FlagPosition | None:
        """The position an evidence names; None when it names none (older evidence)."""
        try:
            doc = orjson.loads(evidence)
            at = doc["position"]
            return cls(f"{at['topic']}/{int(at['partition'])}", int(at["offset"]),
                       str(doc.get("vote_id") or ""))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return None

    def counted(self, fence_field: str, offset: int, vote_id: str, reached: set[str],
                voter: str) -> bool:
        """Whether a vote of the flagged voter came before the flag (so it was counted, and a
        replay counts it again): an earlier record of the same partition, or the flagging
        record before the vote that crossed. ``reached``: the voters whose crossing vote this
        record has shown so far (updated here)."""
        if fence_field != self.fence_field or offset > self.offset:
            return False
        if offset < self.offset:
            return True
        if not self.vote_id or voter in reached:
            return False
        if vote_id == self.vote_id:
            reached.add(voter)
            return False
        return True


@dataclass
class ScreenState:
    """What is stored of an arena's screen, for the voters of a batch."""

    flagged: set[str]  # voters flagged so far
    fences: dict[str, int]  # "topic/partition" -> last screened offset
    stats: dict[str, VoterStats]  # the batch's voters (empty statistics when none stored)
    stored: set[str]  # voters of ``stats`` with statistics in Redis
    # where the batch's flagged voters were flagged (a voter missing: every vote excluded)
    flagged_at: dict[str, FlagPosition] = field(default_factory=dict)
    # replayed votes whose released copies count (an admin released them): excluded
    released: set[str] = field(default_factory=set)


@dataclass
class ScreenDecision:
    """The votes to mark as quarantined (index in the arena's votes, marked vote) and what the
    save writes: statistics (voter, packed, voter, packed, ..), voters whose statistics went
    back to 0, new flags with their evidence, votes kept per quarantined voter, new fences."""

    marked: list[tuple[int, Vote]] = field(default_factory=list)
    stats: list[str | bytes] = field(default_factory=list)
    emptied: list[str] = field(default_factory=list)
    flags: dict[str, bytes] = field(default_factory=dict)
    kept: dict[str, list[bytes]] = field(default_factory=lambda: defaultdict(list))
    fences: dict[str, int] = field(default_factory=dict)

    def writes_nothing(self) -> bool:
        return not (self.stats or self.emptied or self.flags or self.kept or self.fences)


def decide(
    arena: str,
    votes: list[tuple[RawRecord, Vote]],
    state: ScreenState,
    win_probability: WinProbability,
    options: ScreenOptions,
    now: datetime,
) -> ScreenDecision:
    """Score each vote not screened before (offset past the fence) of a voter not flagged; a
    voter whose statistic crosses the threshold is flagged, and that vote and every later one
    of a flagged voter (replays too) is marked ``excluded="quarantined"``. Replayed (after
    Redis lost the screen: the flags and released ids came back from the quarantine topic),
    every vote comes out as it did: a flagged voter's votes from before the flag count, the
    originals of released votes do not (their copies do). Updates ``state.stats`` and
    ``state.flagged`` in place."""
    flagged, fences, stats = state.flagged, state.fences, state.stats
    flagged_at, released = state.flagged_at, state.released
    out = ScreenDecision()
    changed: set[str] = set()
    threshold = options.threshold
    pairs: dict[tuple[str, str], tuple[Side, Side]] = {}  # the fit does not move meanwhile
    for rec, start, end in record_runs(votes):
        fence_field = f"{rec.topic}/{rec.partition}"
        replay = rec.offset <= fences.get(fence_field, -1)
        if not replay:
            out.fences[fence_field] = max(out.fences.get(fence_field, -1), rec.offset)
        reached: set[str] = set()  # flagged voters past their crossing vote in this record
        for i in range(start, end):
            vote = votes[i][1]
            voter = vote.voter
            assert voter is not None
            if replay and vote.vote_id in released:
                out.marked.append((i, vote.model_copy(update={"excluded": "quarantined"})))
                continue  # quarantined then, released since: its copy counts instead
            at = flagged_at.get(voter)
            if at is not None and voter in flagged and at.counted(
                    fence_field, rec.offset, vote.vote_id, reached, voter):
                continue  # before the flag: counted then, counted again (not scored)
            if voter not in flagged:
                if replay:
                    continue
                pair = pairs.get((vote.model_a, vote.model_b))
                if pair is None:
                    p_a = win_probability(arena, vote.model_a, vote.model_b)
                    pair = pairs[(vote.model_a, vote.model_b)] = sides(
                        vote.model_a, vote.model_b, 0.5 if p_a is None else p_a, options)
                crossed = stats[voter].score(pair, vote.winner, threshold)
                changed.add(voter)
                if crossed is None:
                    continue
                flagged.add(voter)
                out.flags[voter] = evidence(arena, voter, stats[voter], crossed, rec, now,
                                            options, vote.vote_id)
            out.marked.append((i, vote.model_copy(update={"excluded": "quarantined"})))
            if not replay:
                out.kept[voter].append(vote.model_dump_json().encode())
    for voter in sorted(changed):
        voter_stats = stats[voter]
        if len(voter_stats):  # any statistic above 0
            out.stats += (voter, voter_stats.dump())
        elif voter in state.stored:  # only those in Redis: HDEL of the rest is a no-op
            out.emptied.append(voter)
    return out


def evidence(
    arena: str, voter: str, stats: VoterStats, crossed: tuple[str, float], rec: RawRecord,
    now: datetime, options: ScreenOptions, vote_id: str = "",
) -> bytes:
    """Why a voter was flagged: the test, the statistic that crossed and where (the record and
    the vote that crossed: the quarantine list starts there, services/rating/kept_votes.py)."""
    model, value = crossed
    _, battles, wins, expected = stats.models[model]
    doc: dict[str, Any] = {
        "test": "cusum: favourite model vs predicted win probability",
        "arena": arena, "voter": voter, "model": model,
        "llr": round(value, 3), "threshold": options.threshold,
        "epsilon": options.epsilon,
        "battles_with_model": int(battles), "wins_of_model": int(wins),
        "expected_wins": round(expected, 2), "votes_screened": stats.votes,
        "flagged_at": now.isoformat(),
        "position": {"topic": rec.topic, "partition": rec.partition, "offset": rec.offset},
        "vote_id": vote_id,
    }
    return orjson.dumps(doc)
