"""The voter screen of the rating worker: a sequential outlier test per voter, and quarantine.

For every voter and every model the voter has seen, a one-sided CUSUM of the log-likelihood
ratio of H1 "this voter's favourite model wins with probability 1 - epsilon whenever it appears"
against H0 "the outcome follows the board's predicted win probability p". A vote for model m
adds ``log((1 - eps) / p_m)``; a vote against it (or a tie) adds ``log(eps / (1 - p_m))``; the
statistic never drops below 0. An honest voter drifts down; a voter who always picks one model
climbs by ``log((1 - eps) / p_m)`` per battle of it, fastest for a weak target. At the threshold
the voter is flagged: that vote and every later one is kept in a quarantine list with the
evidence and excluded from the boards (``excluded="quarantined"``) until an admin releases it.

Exactly once: the screen has its own offset fence per (arena, topic partition), written in the
same MULTI as the statistics, flags and quarantine lists (all keys share the arena's hash tag).
A replayed record is not scored again; its votes are excluded iff the voter is flagged.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
import redis.asyncio as aioredis

from services.rating.batch import RawRecord
from shared.events import Vote
from shared.keys import KeyLayout, text

# (arena, model x, model y) -> P(x beats y) on the arena's overall board, None when unknown
WinProbability = Callable[[str, str, str], float | None]


@dataclass(frozen=True)
class ScreenOptions:
    threshold: float = 9.2
    epsilon: float = 0.1
    p_floor: float = 0.02  # predicted probabilities are clamped to [floor, 1 - floor]


def screened(vote: Vote) -> bool:
    """Votes the screen looks at: counted ones with a voter (released votes were judged)."""
    return vote.voter is not None and vote.anonymous and vote.excluded is None and not vote.released


@dataclass
class VoterStats:
    """Per model: [cusum, battles, wins, expected wins] since the statistic last left 0."""

    votes: int = 0
    models: dict[str, list[float]] | None = None

    @classmethod
    def load(cls, raw: bytes | None) -> VoterStats:
        if raw is None:
            return cls(0, {})
        doc = orjson.loads(raw)
        return cls(int(doc["n"]), doc["m"])  # orjson gives fresh lists: no copy needed

    def dump(self) -> bytes:
        return orjson.dumps({"n": self.votes, "m": self.models})

    def update(self, vote: Vote, p_a: float, options: ScreenOptions) -> tuple[str, float] | None:
        """Score one vote (p_a = predicted P(model_a wins)); the model whose statistic crossed
        the threshold and its value, or None."""
        return self.score(sides(vote.model_a, vote.model_b, p_a, options), vote.winner,
                          options.threshold)

    def score(
        self, pair: tuple[Side, Side], winner: str, threshold: float
    ) -> tuple[str, float] | None:
        """``update`` with the battle's two sides worked out beforehand (``sides``)."""
        models = self.models
        assert models is not None
        self.votes += 1
        crossed: tuple[str, float] | None = None
        for model, p, step_won, step_lost, winning_outcome in pair:
            won = winner == winning_outcome
            stat = models.get(model)
            if stat is None:  # the statistic starts at 0: [0.0, 0, 0, 0.0]
                value = max(0.0, step_won if won else step_lost)
                if value == 0.0:
                    continue
                models[model] = [value, 1, int(won), p]
            else:  # the list is this voter's own (loaded afresh): updated in place
                value = max(0.0, stat[0] + (step_won if won else step_lost))
                if value == 0.0:
                    del models[model]
                    continue
                stat[0] = value
                stat[1] += 1
                stat[2] += int(won)
                stat[3] += p
            if value >= threshold and (crossed is None or value > crossed[1]):
                crossed = (model, value)
        return crossed


# one side of a battle, for the screen: (model, clamped predicted P(it wins), CUSUM step when
# it wins, step when it does not, the outcome that means it won)
Side = tuple[str, float, float, float, str]


def sides(model_a: str, model_b: str, p_a: float, options: ScreenOptions) -> tuple[Side, Side]:
    eps, floor = options.epsilon, options.p_floor
    out: list[Side] = []
    for model, p, outcome in ((model_a, p_a, "model_a"), (model_b, 1.0 - p_a, "model_b")):
        p = min(max(p, floor), 1.0 - floor)
        out.append((model, p, math.log((1 - eps) / p), math.log(eps / (1 - p)), outcome))
    return out[0], out[1]


class VoterScreen:
    def __init__(self, client: aioredis.Redis, keys: KeyLayout, options: ScreenOptions) -> None:
        self._redis = client
        self._keys = keys
        self._options = options

    async def screen(
        self,
        votes: Sequence[tuple[RawRecord, Vote]],
        win_probability: WinProbability,
        now: datetime,
    ) -> list[tuple[RawRecord, Vote]]:
        """The batch with the votes of flagged voters marked ``excluded="quarantined"``."""
        by_arena: dict[str, list[int]] = defaultdict(list)
        for index, (_, vote) in enumerate(votes):
            if screened(vote):
                by_arena[vote.arena].append(index)
        out = list(votes)
        for arena, indexes in by_arena.items():
            for index, vote in await self._screen_arena(
                arena, [votes[i] for i in indexes], win_probability, now
            ):
                out[indexes[index]] = (out[indexes[index]][0], vote)
        return out

    async def _screen_arena(
        self,
        arena: str,
        votes: list[tuple[RawRecord, Vote]],
        win_probability: WinProbability,
        now: datetime,
    ) -> list[tuple[int, Vote]]:
        keys = self._keys
        voters = sorted({v.voter for _, v in votes if v.voter is not None})
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(keys.flagged(arena))
            pipe.hgetall(keys.screen_fence(arena))
            pipe.hmget(keys.voter_stats(arena), voters)
            flagged_raw, fence_raw, stats_raw = await pipe.execute()
        flagged = {text(k) for k in flagged_raw}
        fences = {text(k): int(v) for k, v in fence_raw.items()}
        stats = {v: VoterStats.load(raw) for v, raw in zip(voters, stats_raw, strict=True)}
        stored_before = {v for v, raw in zip(voters, stats_raw, strict=True) if raw is not None}
        changed: set[str] = set()
        new_flags: dict[str, bytes] = {}
        kept: dict[str, list[bytes]] = defaultdict(list)
        new_fences: dict[str, int] = {}
        marked: list[tuple[int, Vote]] = []
        options = self._options
        threshold = options.threshold
        pairs: dict[tuple[str, str], tuple[Side, Side]] = {}  # the fit does not move meanwhile
        for rec, start, end in _records_in_offset_order(votes):
            fence_field = f"{rec.topic}/{rec.partition}"
            replay = rec.offset <= fences.get(fence_field, -1)
            if not replay:
                new_fences[fence_field] = max(new_fences.get(fence_field, -1), rec.offset)
            for i in range(start, end):
                vote = votes[i][1]
                voter = vote.voter
                assert voter is not None
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
                    new_flags[voter] = self._evidence(arena, voter, stats[voter], crossed, rec,
                                                      now)
                quarantined = vote.model_copy(update={"excluded": "quarantined"})
                marked.append((i, quarantined))
                if not replay:
                    kept[voter].append(vote.model_dump_json().encode())
        if not (changed or new_flags or kept or new_fences):
            return marked
        # a few multi-field commands, not one per voter: a batch touches thousands of voters
        stored: dict[str, bytes] = {}
        emptied: list[str] = []  # only those with statistics in Redis: HDEL of the rest is a no-op
        for voter in sorted(changed):
            voter_stats = stats[voter]
            if voter_stats.models:
                stored[voter] = voter_stats.dump()
            elif voter in stored_before:
                emptied.append(voter)
        async with self._redis.pipeline(transaction=True) as tx:  # one slot: the arena's tag
            if stored:
                tx.hset(keys.voter_stats(arena), mapping=stored)  # type: ignore[arg-type]
            if emptied:
                tx.hdel(keys.voter_stats(arena), *emptied)
            if new_flags:
                tx.hset(keys.flagged(arena), mapping=new_flags)  # type: ignore[arg-type]
            for voter, raw in kept.items():
                tx.rpush(keys.quarantine(arena, voter), *raw)
            if new_fences:
                tx.hset(keys.screen_fence(arena), mapping=new_fences)  # type: ignore[arg-type]
            await tx.execute()
        return marked

    def _evidence(
        self, arena: str, voter: str, stats: VoterStats, crossed: tuple[str, float],
        rec: RawRecord, now: datetime,
    ) -> bytes:
        model, value = crossed
        assert stats.models is not None
        _, battles, wins, expected = stats.models[model]
        doc: dict[str, Any] = {
            "test": "cusum: favourite model vs predicted win probability",
            "arena": arena, "voter": voter, "model": model,
            "llr": round(value, 3), "threshold": self._options.threshold,
            "epsilon": self._options.epsilon,
            "battles_with_model": int(battles), "wins_of_model": int(wins),
            "expected_wins": round(expected, 2), "votes_screened": stats.votes,
            "flagged_at": now.isoformat(),
            "position": {"topic": rec.topic, "partition": rec.partition, "offset": rec.offset},
        }
        return orjson.dumps(doc)


def _records_in_offset_order(
    votes: Sequence[tuple[RawRecord, Vote]],
) -> list[tuple[RawRecord, int, int]]:
    """The runs of votes of one record, as (record, start, end) in (topic, partition, offset)
    order: the votes of a batch record are adjacent, so sorting records orders the votes as
    sorting each vote by (topic, partition, offset, position) would."""
    runs: list[tuple[RawRecord, int, int]] = []
    start = 0
    for i in range(1, len(votes) + 1):
        if i == len(votes) or votes[i][0] is not votes[start][0]:
            runs.append((votes[start][0], start, i))
            start = i
    runs.sort(key=lambda run: (run[0].topic, run[0].partition, run[0].offset, run[1]))
    return runs
