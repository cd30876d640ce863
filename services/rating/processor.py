"""The rating worker's core loop step: one Kafka batch in, counts applied exactly once,
touched boards refitted, standings written, rank changes and dead letters published."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any

import orjson
import redis.asyncio as aioredis

from services.rating.batch import ArenaSlice, EloOptions, RawRecord, decode, fold, online_elo
from services.rating.boards import rank_changes, refit, standings_document
from services.rating.engine import BoardFit, FitOptions
from services.rating.read_models import ReadModelWriter
from services.rating.store import APPLIED, PARTLY_APPLIED, RatingStore
from shared.events import RankChange, SourcePosition, Vote, utc_now
from shared.keys import board_name

log = logging.getLogger(__name__)

Publish = Callable[[Sequence[bytes]], Awaitable[None]]


class RatingProcessor:
    """State kept between batches: the last fit of each board (warm start) and its rows."""

    def __init__(
        self,
        store: RatingStore,
        options: FitOptions,
        publish_dead_letters: Publish,
        publish_rank_changes: Publish,
        clock: Callable[[], datetime] = utc_now,
        redis_retry_s: float = 0.5,
        elo: EloOptions | None = None,
        read_models: ReadModelWriter | None = None,
    ) -> None:
        self._elo = elo or EloOptions()
        self._store = store
        self._options = options
        self._publish_dead = publish_dead_letters
        self._publish_changes = publish_rank_changes
        self._clock = clock
        self._retry_s = redis_retry_s
        self._read_models = read_models
        self._fits: dict[str, BoardFit] = {}
        self._rows: dict[str, list[dict[str, Any]]] = {}

    async def process(self, records: Sequence[RawRecord]) -> None:
        votes, dead = decode(records)
        if dead:
            now = self._clock()
            await self._publish_dead([orjson.dumps(d.to_json(now)) for d in dead])
            log.warning("dead-lettered %d records, first: %s", len(dead), dead[0].reason)
        delay = self._retry_s
        while True:  # Redis down: wait and retry; the fence makes the retry harmless
            try:
                await self._apply_and_refit(votes)
                return
            except (aioredis.ConnectionError, aioredis.TimeoutError, OSError) as exc:
                log.warning("redis unavailable (%s); retrying batch in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _apply_and_refit(self, votes: list[tuple[RawRecord, Vote]]) -> None:
        started = time.perf_counter()
        to_refit: dict[tuple[str, str], SourcePosition] = {}
        for sl in fold(votes):
            applied = await self._apply_slice(sl, votes)
            position = SourcePosition(topic=sl.topic, partition=sl.partition, offset=sl.last_offset)
            for view in sl.increments:
                if applied or board_name(sl.arena, view) not in self._fits:
                    to_refit[(sl.arena, view)] = position
        await self._store.register_arenas({arena for arena, _ in to_refit})
        apply_done = time.perf_counter()
        for (arena, view), position in to_refit.items():
            try:
                await self._refit_board(arena, view, position)
            except (aioredis.ConnectionError, aioredis.TimeoutError, OSError):
                raise
            except Exception:  # one broken board must not stop the others
                log.exception("refit of %s failed", board_name(arena, view))
        log.debug(
            "batch of %d votes: apply %.1f ms, refit of %d boards %.1f ms",
            len(votes), 1000 * (apply_done - started), len(to_refit),
            1000 * (time.perf_counter() - apply_done),
        )

    async def _apply_slice(self, sl: ArenaSlice, votes: list[tuple[RawRecord, Vote]]) -> bool:
        status, fence = await self._apply_with_elo(sl)
        if status == PARTLY_APPLIED:  # a replay overlapping what was applied: keep the rest
            key = (sl.arena, sl.topic, sl.partition)
            rest = fold(
                [(r, v) for r, v in votes if (v.arena, r.topic, r.partition) == key],
                after={key: fence},
            )
            if not rest:
                return False
            status, fence = await self._apply_with_elo(rest[0])
        return status == APPLIED

    async def _apply_with_elo(self, sl: ArenaSlice) -> tuple[int, int]:
        """Elo depends on order: compute it from the stored ratings, in offset order, and let
        the fenced script write it together with the counts (or not at all)."""
        current = await self._store.read_elo(sl.arena, sl.increments)
        return await self._store.apply(sl, online_elo(sl, current, self._elo))

    async def _refit_board(self, arena: str, view: str, position: SourcePosition) -> None:
        board = board_name(arena, view)
        counts = await self._store.read_counts(arena, view)
        fit = refit(counts, self._options, self._fits.get(board))
        elo = (await self._store.read_elo(arena, [view]))[view]
        now = self._clock()
        doc = standings_document(arena, view, fit, elo, now, position)
        old_rows = self._rows.get(board)
        if old_rows is None:
            stored = await self._store.read_standings(arena, view)
            old_rows = orjson.loads(stored)["rows"] if stored else []
        await self._store.write_standings(arena, view, orjson.dumps(doc))
        self._fits[board] = fit
        self._rows[board] = doc["rows"]
        changes: list[RankChange] = rank_changes(board, old_rows, doc["rows"], now, position)
        if self._read_models is not None:
            await self._read_models.after_refit(arena, view, counts, fit, doc["rows"], changes, now)
        if changes:
            await self._publish_changes([c.model_dump_json().encode() for c in changes])
