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
import struct
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from services.common.redis_client import RedisClient
from services.rating.batch import RawRecord, record_runs
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


# The stored form of a voter's statistics (the ``voters`` hash): a version byte (1), the votes
# screened (int64), the byte length of the names; the model ids joined by spaces (ids have none);
# then per model, in the same order, a 32-byte record (cusum, battles, wins, expected wins) as
# little-endian double, int64, int64, double. Values written before it are JSON objects
# ``{"n": votes, "m": {model: [cusum, battles, wins, expected]}}`` (first byte "{"), still read.
# Cheaper than JSON both ways: a load splits the names and keeps the records as bytes, a vote
# unpacks and repacks only the two records it touches, and a dump concatenates.
_FORMAT = 1
_HEADER = struct.Struct("<BqI")
_RECORD = struct.Struct("<dqqd")
_R = _RECORD.size
_unpack_record, _pack_record, _pack_new = _RECORD.unpack_from, _RECORD.pack_into, _RECORD.pack


class VoterStats:
    """Per model: [cusum, battles, wins, expected wins] since the statistic last left 0."""

    __slots__ = ("_names", "_records", "votes")

    def __init__(self, votes: int = 0, models: dict[str, list[float]] | None = None) -> None:
        self.votes = votes
        self._names: list[str] = []
        self._records = bytearray()
        for model, (cusum, battles, wins, expected) in (models or {}).items():
            self._append(model, float(cusum), int(battles), int(wins), float(expected))

    def __len__(self) -> int:
        """The number of models with a statistic (above 0)."""
        return len(self._names)

    @property
    def models(self) -> dict[str, list[float]]:
        """The statistics as a dict (a copy: ``score`` updates the records)."""
        return {
            name: list(_RECORD.unpack_from(self._records, i * _R))
            for i, name in enumerate(self._names)
        }

    @classmethod
    def load(cls, raw: bytes | None) -> VoterStats:
        if raw is None:
            return cls()
        if raw[:1] == b"{":  # written before the packed form
            doc = orjson.loads(raw)
            return cls(int(doc["n"]), doc["m"])
        version, votes, length = _HEADER.unpack_from(raw)
        if version != _FORMAT:
            raise ValueError(f"voter statistics of unknown format {version}")
        stats = cls.__new__(cls)
        stats.votes = votes
        end = _HEADER.size + length
        stats._names = raw[_HEADER.size:end].decode().split(" ") if length else []
        stats._records = bytearray(raw[end:])
        if len(stats._records) != _R * len(stats._names):
            raise ValueError("voter statistics truncated")
        return stats

    def dump(self) -> bytes:
        names = " ".join(self._names).encode()
        return b"".join((_HEADER.pack(_FORMAT, self.votes, len(names)), names, self._records))

    def _append(self, model: str, cusum: float, battles: int, wins: int, expected: float) -> None:
        if not model or " " in model:
            raise ValueError(f"model id {model!r} cannot be stored in voter statistics")
        self._names.append(model)
        self._records += _RECORD.pack(cusum, battles, wins, expected)

    def update(self, vote: Vote, p_a: float, options: ScreenOptions) -> tuple[str, float] | None:
        """Score one vote (p_a = predicted P(model_a wins)); the model whose statistic crossed
        the threshold and its value, or None."""
        return self.score(sides(vote.model_a, vote.model_b, p_a, options), vote.winner,
                          options.threshold)

    def score(
        self, pair: tuple[Side, Side], winner: str, threshold: float
    ) -> tuple[str, float] | None:
        """``update`` with the battle's two sides worked out beforehand (``sides``)."""
        names, records = self._names, self._records
        self.votes += 1
        crossed: tuple[str, float] | None = None
        for model, p, step_won, step_lost, winning_outcome in pair:
            won = winner == winning_outcome
            if model in names:
                at = names.index(model) * _R
                cusum, battles, wins, expected = _unpack_record(records, at)
                value = cusum + (step_won if won else step_lost)
                if not value > 0.0:  # max(0, value) == 0 (NaN too): back at 0, no statistic
                    del names[at // _R]
                    del records[at:at + _R]
                    continue
                _pack_record(records, at, value, battles + 1, wins + won, expected + p)
            else:  # the statistic starts at 0: [0.0, 0, 0, 0.0]
                value = step_won if won else step_lost
                if not value > 0.0:
                    continue
                if not model or " " in model:
                    raise ValueError(f"model id {model!r} cannot be stored in voter statistics")
                names.append(model)
                records += _pack_new(value, 1, won, p)
            if value >= threshold and (crossed is None or value > crossed[1]):
                crossed = (model, value)
        return crossed


# one side of a battle, for the screen: (model, clamped predicted P(it wins), CUSUM step when
# it wins, step when it does not, the outcome that means it won)
Side = tuple[str, float, float, float, str]


def sides(model_a: str, model_b: str, p_a: float, options: ScreenOptions) -> tuple[Side, Side]:
    eps, floor = options.epsilon, options.p_floor
    ceiling = 1.0 - floor
    p = min(max(p_a, floor), ceiling)
    q = min(max(1.0 - p_a, floor), ceiling)
    log = math.log
    return ((model_a, p, log((1 - eps) / p), log(eps / (1 - p)), "model_a"),
            (model_b, q, log((1 - eps) / q), log(eps / (1 - q)), "model_b"))


_HSET_FIELDS = 200  # voter statistics per HSET command


class VoterScreen:
    def __init__(self, client: RedisClient, keys: KeyLayout, options: ScreenOptions) -> None:
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
        for index, (_, vote) in enumerate(votes):  # screened(vote), inline: every vote
            if (vote.voter is not None and vote.anonymous and vote.excluded is None
                    and not vote.released):
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
        for rec, start, end in record_runs(votes):
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
        stored: list[str | bytes] = []  # voter, statistics, voter, statistics, ..
        emptied: list[str] = []  # only those with statistics in Redis: HDEL of the rest is a no-op
        for voter in sorted(changed):
            voter_stats = stats[voter]
            if voter_stats._names:  # any statistic above 0
                stored += (voter, voter_stats.dump())
            elif voter in stored_before:
                emptied.append(voter)
        async with self._redis.pipeline(transaction=True) as tx:  # one slot: the arena's tag
            # HSETs of at most _HSET_FIELDS fields: one command of a few hundred kB took hiredis
            # twice as long to pack as the same fields in commands of ~100 kB (same MULTI)
            for at in range(0, len(stored), 2 * _HSET_FIELDS):
                tx.execute_command("HSET", keys.voter_stats(arena),
                                   *stored[at:at + 2 * _HSET_FIELDS])
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
