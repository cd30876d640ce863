"""The rating worker's core loop step: one Kafka batch in, counts applied exactly once,
touched boards refitted, standings written, rank changes and dead letters published."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any

import orjson
import redis.asyncio as aioredis

from services.rating.batch import ArenaSlice, EloOptions, RawRecord, decode, fold, online_elo
from services.rating.boards import rank_changes, refit, standings_document
from services.rating.engine import BoardFit, FitOptions
from services.rating.store import APPLIED, BEHIND, PARTLY_APPLIED, RatingStore
from shared.events import RankChange, SourcePosition, Vote, utc_now
from shared.keys import KeyLayout, board_name

log = logging.getLogger(__name__)

Publish = Callable[[Sequence[bytes]], Awaitable[None]]


class RatingProcessor:
    """State kept between batches: the last fit of each board (warm start) and its rows.

    With ``generations_of`` (the base key layout), the processor writes to the live generation
    of that key space and copies each slice into the one a rebuild is filling (see
    services/rating/rebuild.py); without it, it writes to ``store``'s keys only.
    """

    def __init__(
        self,
        store: RatingStore,
        options: FitOptions,
        publish_dead_letters: Publish,
        publish_rank_changes: Publish,
        clock: Callable[[], datetime] = utc_now,
        redis_retry_s: float = 0.5,
        elo: EloOptions | None = None,
        generations_of: KeyLayout | None = None,
    ) -> None:
        self._elo = elo or EloOptions()
        self._store = store
        self._base = generations_of
        self._refit_all = generations_of is not None  # after start and after a switch
        self._options = options
        self._publish_dead = publish_dead_letters
        self._publish_changes = publish_rank_changes
        self._clock = clock
        self._retry_s = redis_retry_s
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
        to_refit: dict[tuple[str, str], SourcePosition] = {}
        slices = fold(votes)
        fences_before = await self._use_live_generation(slices)
        for sl in slices:
            applied = await self._apply_slice(self._store, sl, votes)
            position = SourcePosition(topic=sl.topic, partition=sl.partition, offset=sl.last_offset)
            for view in sl.increments:
                if applied or board_name(sl.arena, view) not in self._fits:
                    to_refit[(sl.arena, view)] = position
        if fences_before is not None:
            await self._copy_to_other_generations(slices, votes, fences_before)
        await self._store.register_arenas({arena for arena, _ in to_refit})
        if self._refit_all:
            to_refit.update(await self._positions_of_all_boards(to_refit))
            self._refit_all = False
        for (arena, view), position in to_refit.items():
            try:
                await self._refit_board(arena, view, position)
            except (aioredis.ConnectionError, aioredis.TimeoutError, OSError):
                raise
            except Exception:  # one broken board must not stop the others
                log.exception("refit of %s failed", board_name(arena, view))

    async def _apply_slice(
        self,
        store: RatingStore,
        sl: ArenaSlice,
        votes: list[tuple[RawRecord, Vote]],
        required_fence: int = -1,
    ) -> bool:
        status, fence = await self._apply_with_elo(store, sl, required_fence)
        if status == PARTLY_APPLIED:  # a replay overlapping what was applied: keep the rest
            key = (sl.arena, sl.topic, sl.partition)
            rest = fold(
                [(r, v) for r, v in votes if (v.arena, r.topic, r.partition) == key],
                after={key: fence},
            )
            if not rest:
                return False
            status, fence = await self._apply_with_elo(store, rest[0], required_fence)
        return status == APPLIED

    async def _apply_with_elo(
        self, store: RatingStore, sl: ArenaSlice, required_fence: int = -1
    ) -> tuple[int, int]:
        """Elo depends on order: compute it from the stored ratings, in offset order, and let
        the fenced script write it together with the counts (or not at all)."""
        current = await store.read_elo(sl.arena, sl.increments)
        return await store.apply(sl, online_elo(sl, current, self._elo), required_fence)

    async def _use_live_generation(
        self, slices: Sequence[ArenaSlice]
    ) -> dict[tuple[str, str], int] | None:
        """Write to the live generation; return each slice's fence before it is applied there
        (what a copy into another generation requires), or None when not following."""
        if self._base is None:
            return None
        live = (await self._store.generations(self._base)).active
        if live != self._store.keys:
            log.info("rating state is now in key space %s", live.prefix)
            self._store = self._store.for_keys(live)
            self._refit_all = True
        fences: dict[str, dict[str, int]] = {}
        for sl in slices:
            if sl.arena not in fences:
                fences[sl.arena] = await self._store.read_fence(sl.arena)
        return {(sl.arena, sl.fence_field): fences[sl.arena].get(sl.fence_field, -1)
                for sl in slices}

    async def _copy_to_other_generations(
        self,
        slices: Sequence[ArenaSlice],
        votes: list[tuple[RawRecord, Vote]],
        fences_before: dict[tuple[str, str], int],
    ) -> None:
        """Copy the batch into the generation being rebuilt (and into the new live one if the
        switch happened meanwhile). Read after the live apply, so no batch misses a switch; a
        copy is only made where that generation already holds everything before the slice."""
        assert self._base is not None
        gens = await self._store.generations(self._base)
        for layout in {gens.active, gens.next} - {self._store.keys, None}:
            assert layout is not None
            target = self._store.for_keys(layout)
            for sl in slices:
                required = fences_before[(sl.arena, sl.fence_field)]
                status, fence = await self._apply_with_elo(target, sl, required)
                if status == PARTLY_APPLIED:
                    await self._apply_slice(target, sl, votes, required)
                elif status == BEHIND and layout == gens.active:
                    log.error("generation %s is behind at %s of %s (fence %d < %d)",
                              layout.prefix, sl.fence_field, sl.arena, fence, required)
            await target.register_arenas({sl.arena for sl in slices})
        if gens.active != self._store.keys:  # switched while this batch was applied
            log.info("rating state is now in key space %s", gens.active.prefix)
            self._store = self._store.for_keys(gens.active)
            self._refit_all = True

    async def _positions_of_all_boards(
        self, touched: dict[tuple[str, str], SourcePosition]
    ) -> dict[tuple[str, str], SourcePosition]:
        """Every board of the key space with the position its standings were computed at."""
        out: dict[tuple[str, str], SourcePosition] = {}
        for arena, view in await self._store.boards():
            if (arena, view) in touched:
                continue
            stored = await self._store.read_standings(arena, view)
            position = orjson.loads(stored).get("position") if stored else None
            if position is not None:
                out[(arena, view)] = SourcePosition.model_validate(position)
        return out

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
        if changes:
            await self._publish_changes([c.model_dump_json().encode() for c in changes])
