"""The voter screen of the rating worker: a sequential outlier test per voter, and quarantine.
Load (Redis) -> decide (pure, services/rating/screen_decision.py) -> save (Redis).

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

import asyncio
import logging
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime

import redis.asyncio as aioredis

from services.common.quarantine_records import QuarantineRecords
from services.common.records import RecordUnavailable
from services.common.redis_client import RedisClient
from services.common.runtime import off_the_loop
from services.rating.arena_slices import RawRecord
from services.rating.screen_decision import (
    FlagPosition,
    ScreenDecision,
    ScreenState,
    WinProbability,
    decide,
)
from services.rating.voter_stats import ScreenOptions, VoterStats
from shared.events import Vote
from shared.keys import KeyLayout, text

log = logging.getLogger(__name__)

_HSET_FIELDS = 200  # voter statistics per HSET command


class VoterScreen:
    """The screen's Redis side: loads an arena's flags, fences and the batch's voters'
    statistics, has ``decide`` judge the votes, and saves the outcome in one MULTI."""

    def __init__(self, client: RedisClient, keys: KeyLayout, options: ScreenOptions,
                 decisions: QuarantineRecords | None = None) -> None:
        self._redis = client
        self._keys = keys
        self._options = options
        self._decisions = decisions  # the quarantine topic: each new flag goes there first

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
        if by_arena and self._decisions is not None and not await self._redis.exists(
                self._keys.restored(self._decisions.topic)):
            # Redis lost the quarantine decisions (wiped): screening now would flag released
            # voters again; the batch waits (retried as for a Redis outage) until they are back
            raise aioredis.ConnectionError("the quarantine decisions are not back in Redis yet")
        out = list(votes)
        for arena, indexes in by_arena.items():
            arena_votes = [votes[i] for i in indexes]
            state = await self._load(arena, arena_votes)
            decision = await off_the_loop(len(arena_votes), decide, arena, arena_votes, state,
                                          win_probability, self._options, now)
            if not decision.writes_nothing():
                await self._save(arena, decision)
            for index, vote in decision.marked:
                out[indexes[index]] = (out[indexes[index]][0], vote)
        return out

    async def _load(self, arena: str, votes: list[tuple[RawRecord, Vote]]) -> ScreenState:
        keys = self._keys
        voters = sorted({v.voter for _, v in votes if v.voter is not None})
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(keys.flagged(arena))
            pipe.hgetall(keys.screen_fence(arena))
            pipe.hmget(keys.voter_stats(arena), voters)
            pipe.scard(keys.released(arena))
            pipe.hgetall(keys.screen_restored())  # another slot: a pipeline, not a MULTI
            flagged_raw, fence_raw, stats_raw, any_released, restored = await pipe.execute()
        fences = {text(k): int(v) for k, v in fence_raw.items()}
        for fence_field, offset in restored.items():  # replays for every arena up to there
            fences[text(fence_field)] = max(fences.get(text(fence_field), -1), int(offset))
        released: set[str] = set()
        if any_released:  # which replayed votes are originals of released copies
            ids = [v.vote_id for rec, v in votes
                   if rec.offset <= fences.get(f"{rec.topic}/{rec.partition}", -1)]
            if ids:
                found = await self._redis.smismember(keys.released(arena), ids)
                released = {i for i, hit in zip(ids, found, strict=True) if hit}
        flagged = {text(k): raw for k, raw in flagged_raw.items()}
        flagged_at = {v: at for v in voters if v in flagged
                      if (at := FlagPosition.of(flagged[v])) is not None}
        return ScreenState(
            flagged=set(flagged),
            flagged_at=flagged_at,
            released=released,
            fences=fences,
            stats={v: VoterStats.load(raw) for v, raw in zip(voters, stats_raw, strict=True)},
            stored={v for v, raw in zip(voters, stats_raw, strict=True) if raw is not None},
        )

    async def close(self) -> None:
        if self._decisions is not None:
            await self._decisions.close()

    async def _record(self, arena: str, voter: str, evidence: bytes) -> int:
        """A new flag to the quarantine topic, retried until Kafka acknowledges it (the batch
        waits: its flag must not exist in Redis alone)."""
        assert self._decisions is not None
        delay = 0.5
        while True:
            try:
                return await self._decisions.record(arena, voter, evidence)
            except RecordUnavailable as exc:
                log.warning("%s; retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _save(self, arena: str, decision: ScreenDecision) -> None:
        """Everything in one MULTI (one slot: every key has the arena's tag), with a few
        multi-field commands, not one per voter: a batch touches thousands of voters."""
        keys, stored = self._keys, decision.stats
        offsets: dict[str, int] = {}
        if self._decisions is not None:  # the system of record first (a retried batch writes
            for voter, evidence in decision.flags.items():  # the flag again: same key)
                offsets[voter] = await self._record(arena, voter, evidence)
        async with self._redis.pipeline(transaction=True) as tx:
            # HSETs of at most _HSET_FIELDS fields: one command of a few hundred kB took hiredis
            # twice as long to pack as the same fields in commands of ~100 kB (same MULTI)
            for at in range(0, len(stored), 2 * _HSET_FIELDS):
                tx.execute_command("HSET", keys.voter_stats(arena),
                                   *stored[at:at + 2 * _HSET_FIELDS])
            if decision.emptied:
                tx.hdel(keys.voter_stats(arena), *decision.emptied)
            if decision.flags:
                tx.hset(keys.flagged(arena), mapping=decision.flags)  # type: ignore[arg-type]
            if offsets:
                tx.hset(keys.flag_offsets(arena), mapping=offsets)  # type: ignore[arg-type]
            for voter, raw in decision.kept.items():
                tx.rpush(keys.quarantine(arena, voter), *raw)
            if decision.fences:
                tx.hset(keys.screen_fence(arena),
                        mapping=decision.fences)  # type: ignore[arg-type]
            await tx.execute()
