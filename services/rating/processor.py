"""The rating worker's core loop step: one Kafka batch in, counts applied exactly once,
touched boards refitted, standings written, rank changes and dead letters published."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import datetime
from typing import Any, Protocol

import orjson
import redis.asyncio as aioredis

from services.rating.arena_state import ArenaState, rest_after
from services.rating.batch import (
    ArenaSlice,
    EloOptions,
    RawRecord,
    decode,
    fold,
    online_elo,
    style_battles,
)
from services.rating.boards import rank_changes, standings_document
from services.rating.engine import (
    BattleColumns,
    BoardFit,
    ContextualFit,
    FitOptions,
    PairCounts,
    StyleOptions,
    fit_board,
    fit_contextual,
)
from services.rating.read_models import ArenaFence, ReadModelWriter
from services.rating.screen import VoterScreen
from services.rating.store import (
    ALREADY_APPLIED,
    APPLIED,
    BEHIND,
    PARTLY_APPLIED,
    STALE,
    RatingStore,
)
from shared.events import RankChange, SourcePosition, Vote, utc_now
from shared.keys import KeyLayout, board_name, is_style_view, style_view

log = logging.getLogger(__name__)

Publish = Callable[[Sequence[bytes]], Awaitable[None]]


class BatchObserver(Protocol):
    """Where the processor reports what it did (``services.common.metrics.RatingMetrics``)."""

    def observe_batch(self, votes: int, apply_s: float, refit_s: float, boards: int) -> None: ...

    def observe_dead_letters(self, count: int) -> None: ...


class RatingProcessor:
    """State kept between batches: each arena's counts and Elo (``ArenaState``), the last fit of
    each board (warm start) and its rows.

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
        read_models: ReadModelWriter | None = None,
        metrics: BatchObserver | None = None,
        screen: VoterScreen | None = None,
        generations_of: KeyLayout | None = None,
        style: StyleOptions | None = None,
    ) -> None:
        self._base = generations_of
        self._refit_all = generations_of is not None  # after start and after a switch
        self._metrics = metrics
        self._elo = elo or EloOptions()
        self._store = store
        self._options = options
        self._publish_dead = publish_dead_letters
        self._publish_changes = publish_rank_changes
        self._clock = clock
        self._retry_s = redis_retry_s
        self._read_models = read_models
        self._screen = screen
        self._arenas: dict[str, ArenaState] = {}
        self._fits: dict[str, BoardFit] = {}
        # per arena, its overall fit as plain Python (model -> index, theta, preliminary): the
        # screen asks for a win probability hundreds of times a batch
        self._win_inputs: dict[str, tuple[BoardFit, dict[str, int], list[float], list[bool]]] = {}
        self._rows: dict[str, list[dict[str, Any]]] = {}
        # style-controlled boards: options, last fits (warm starts), boards due for a refit
        self._style = style or StyleOptions(board=FitOptions(
            reweighted=True, preliminary_votes=options.preliminary_votes, tol=options.tol))
        self._style_fits: dict[str, ContextualFit] = {}
        self._style_due: dict[tuple[str, str], SourcePosition] = {}
        self._unrefitted: dict[tuple[str, str], SourcePosition] = {}  # applied, not refitted
        self._lock = asyncio.Lock()  # batches and style refits take turns with the cached state

    async def process(self, records: Sequence[RawRecord]) -> None:
        async with self._lock:
            await self._process(records)

    async def _process(self, records: Sequence[RawRecord]) -> None:
        votes, dead = decode(records)
        if dead:
            now = self._clock()
            await self._publish_dead([orjson.dumps(d.to_json(now)) for d in dead])
            log.warning("dead-lettered %d records, first: %s", len(dead), dead[0].reason)
            if self._metrics is not None:
                self._metrics.observe_dead_letters(len(dead))
        delay = self._retry_s
        while True:  # Redis down: wait and retry; the fence makes the retry harmless
            try:
                await self._apply_and_refit(votes)
                return
            except (aioredis.ConnectionError, aioredis.TimeoutError, OSError) as exc:
                self._arenas.clear()  # an apply may or may not have landed: reload
                log.warning("redis unavailable (%s); retrying batch in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _apply_and_refit(self, votes: list[tuple[RawRecord, Vote]]) -> None:
        started = time.perf_counter()
        if self._screen is not None:  # votes of flagged voters: kept, not counted
            votes = await self._screen.screen(votes, self._win_probability, self._clock())
        # kept until refitted: a retry after a lost connection finds the slices that landed
        # already applied, and would otherwise leave their boards as they were
        to_refit = self._unrefitted
        slices = fold(votes)
        fences_before = await self._use_live_generation(slices)
        for sl in slices:
            applied = await self._apply_slice(sl, votes)
            position = SourcePosition(topic=sl.topic, partition=sl.partition, offset=sl.last_offset)
            for view in sl.increments:
                if applied or board_name(sl.arena, view) not in self._fits:
                    to_refit[(sl.arena, view)] = position
            if applied:
                for view in style_battles(sl):
                    self._style_due[(sl.arena, view)] = position
        if fences_before is not None:
            await self._copy_to_other_generations(slices, votes, fences_before)
        await self._store.register_arenas({arena for arena, _ in to_refit})
        if self._refit_all:
            to_refit.update(await self._positions_of_all_boards(to_refit))
            self._refit_all = False
        apply_done = time.perf_counter()
        changes: list[RankChange] = []
        try:
            await self._refit_boards(to_refit, changes)
        finally:  # one publish (one wait for the broker's acks) per batch, not one per board;
            # also when Redis fails midway: the boards refitted so far will not diff again
            if changes:
                await self._publish_changes([c.model_dump_json().encode() for c in changes])
        refit_done = time.perf_counter()
        refitted = len(to_refit)
        to_refit.clear()
        log.debug(
            "batch of %d votes: apply %.1f ms, refit of %d boards %.1f ms",
            len(votes), 1000 * (apply_done - started), refitted,
            1000 * (refit_done - apply_done),
        )
        if self._metrics is not None:
            self._metrics.observe_batch(len(votes), apply_done - started,
                                        refit_done - apply_done, refitted)

    async def _apply_slice(self, sl: ArenaSlice, votes: list[tuple[RawRecord, Vote]]) -> bool:
        """Apply one slice exactly once; True if it changed the counts."""
        while True:
            state = await self._state(sl.arena, sl.increments)
            elo_after = online_elo(sl, state.elo, self._elo)  # Elo depends on offset order
            result = await self._store.apply(sl, state.version, elo_after)
            if result.status == APPLIED:
                state.absorb(sl, elo_after, result.version)
                return True
            if result.status == STALE:  # another writer moved the arena on: reload, retry
                log.info("arena %s changed elsewhere; reloading its state", sl.arena)
                self._arenas.pop(sl.arena, None)
                continue
            if result.status == ALREADY_APPLIED:
                return False
            # partly applied before (a replay overlapping what was applied): keep the rest
            rest = rest_after(sl, votes, result.fence)
            if rest is None:
                return False
            sl = rest

    async def _copy_slice(
        self,
        target: RatingStore,
        sl: ArenaSlice,
        votes: list[tuple[RawRecord, Vote]],
        required_fence: int,
    ) -> int:
        """Apply a slice into another generation (no cached state there); returns the status."""
        while True:
            snapshot = await target.load(sl.arena, sl.increments, counts=False)
            elo_after = online_elo(sl, snapshot.elo, self._elo)
            result = await target.apply(sl, snapshot.version, elo_after, required_fence)
            if result.status == STALE:
                continue
            if result.status != PARTLY_APPLIED:
                return result.status
            rest = rest_after(sl, votes, result.fence)
            if rest is None:
                return ALREADY_APPLIED
            sl = rest

    async def _use_live_generation(
        self, slices: Sequence[ArenaSlice]
    ) -> dict[tuple[str, str], int] | None:
        """Write to the live generation; return each slice's fence before it is applied there
        (what a copy into another generation requires), or None when not following."""
        if self._base is None:
            return None
        live = (await self._store.generations(self._base)).active
        if live != self._store.keys:
            self._switch_to(live)
        fences: dict[str, dict[str, int]] = {}
        for sl in slices:
            if sl.arena not in fences:
                fences[sl.arena] = await self._store.read_fence(sl.arena)
        return {(sl.arena, sl.fence_field): fences[sl.arena].get(sl.fence_field, -1)
                for sl in slices}

    def _switch_to(self, live: KeyLayout) -> None:
        log.info("rating state is now in key space %s", live.prefix)
        self._store = self._store.for_keys(live)
        self._arenas.clear()  # cached state belongs to the old generation
        self._refit_all = True

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
                status = await self._copy_slice(target, sl, votes, required)
                if status == BEHIND and layout == gens.active:
                    log.error("generation %s is behind at %s of %s (fence < %d)",
                              layout.prefix, sl.fence_field, sl.arena, required)
            await target.register_arenas({sl.arena for sl in slices})
        if gens.active != self._store.keys:  # switched while this batch was applied
            self._switch_to(gens.active)

    async def _positions_of_all_boards(
        self, touched: dict[tuple[str, str], SourcePosition]
    ) -> dict[tuple[str, str], SourcePosition]:
        """Every board of the key space with the position its standings were computed at."""
        out: dict[tuple[str, str], SourcePosition] = {}
        for arena, view in await self._store.boards():
            if (arena, view) in touched or is_style_view(view):
                continue
            stored = await self._store.read_standings(arena, view)
            position = orjson.loads(stored).get("position") if stored else None
            if position is not None:
                out[(arena, view)] = SourcePosition.model_validate(position)
                self._style_due.setdefault((arena, view), out[(arena, view)])
        return out

    def _win_probability(self, arena: str, model_a: str, model_b: str) -> float | None:
        """P(model_a beats model_b) on the arena's overall board as last fitted; None (not
        judged) unless both models are past the preliminary stage: early estimates of a board
        with few votes are extreme, and would make honest upsets look like rigging."""
        fit = self._fits.get(board_name(arena, "overall"))
        if fit is None:
            return None
        inputs = self._win_inputs.get(arena)
        if inputs is None or inputs[0] is not fit:  # refitted since: the same values, as lists
            inputs = self._win_inputs[arena] = (
                fit, {model: i for i, model in enumerate(fit.models)},  # ids are unique
                fit.theta.tolist(), fit.preliminary.tolist())
        _, index, theta, preliminary = inputs
        a, b = index.get(model_a), index.get(model_b)
        if a is None or b is None or preliminary[a] or preliminary[b]:
            return None
        return 1.0 / (1.0 + math.exp(theta[b] - theta[a]))  # float64 as numpy's, bit for bit

    async def _state(self, arena: str, views: Iterable[str]) -> ArenaState:
        """The cached counts and Elo of an arena's views, loaded from Redis when missing."""
        state = self._arenas.get(arena)
        missing = [v for v in views if state is None or v not in state.counts]
        if state is not None and not missing:
            return state
        snapshot = await self._store.load(arena, missing)
        if state is None or snapshot.version != state.version:
            everything = set(missing) | (set(state.counts) if state else set())
            snapshot = await self._store.load(arena, everything)
            state = self._arenas[arena] = ArenaState(snapshot.version, {}, {})
        state.counts.update(snapshot.counts)
        state.elo.update(snapshot.elo)
        return state

    async def _refit_boards(
        self, to_refit: dict[tuple[str, str], SourcePosition], changes: list[RankChange]
    ) -> None:
        """Refit the boards a batch touched; their Redis writes overlap (a batch touches dozens
        of boards, and one after the other their round trips were most of a batch's time).
        Rank changes are added to ``changes``. One broken board does not stop the others; a lost
        Redis connection is raised once every board has finished, after the rank changes of
        those refitted are added (the caller publishes them: they will not diff again)."""
        views_of: dict[str, list[str]] = {}
        for arena, view in to_refit:
            views_of.setdefault(arena, []).append(view)
        for arena, views in views_of.items():  # loaded first: the refits then share it as is
            await self._state(arena, views)
        results = await asyncio.gather(
            *(self._refit_board(arena, view, position)
              for (arena, view), position in to_refit.items()),
            return_exceptions=True,
        )
        lost: BaseException | None = None
        for (arena, view), result in zip(to_refit, results, strict=True):
            if isinstance(result, asyncio.CancelledError):
                raise result
            if isinstance(result, aioredis.ConnectionError | aioredis.TimeoutError | OSError):
                lost = lost or result
            elif isinstance(result, BaseException):
                log.error("refit of %s failed", board_name(arena, view), exc_info=result)
            else:
                changes.extend(result)
        if lost is not None:
            raise lost

    async def _refit_board(
        self, arena: str, view: str, position: SourcePosition
    ) -> list[RankChange]:
        """Refit one board and write its standings; returns its rank changes (published by the
        caller, once for the batch)."""
        board = board_name(arena, view)
        state = await self._state(arena, [view])
        counts = state.counts[view]
        fit = fit_board(counts, self._options, warm_start=self._fits.get(board))
        elo = state.elo[view]
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
        return changes


    def read_models_due_in(self) -> float | None:
        """Seconds until owed matrices or history points are due, None if nothing is owed."""
        return None if self._read_models is None else self._read_models.owed_due_in()

    async def flush_read_models(self, everything: bool = False) -> int:
        """Write the read models the last refits left owed, once due (all of them with
        ``everything``: at shutdown), so that they catch up when the votes stop. Fenced by the
        arena's version: only what this worker's cached state still describes is written.
        Returns how many boards were written."""
        if self._read_models is None:
            return 0
        async with self._lock:  # the cached counts and fits are consistent between batches
            return await self._read_models.flush(self._arena_fence, everything)

    async def _arena_fence(
        self, arena: str, view: str, counts: PairCounts
    ) -> ArenaFence | None:
        """The fence an owed write made from ``counts`` must find unchanged: the arena at the
        version of the cached state, if that state's counts of the view are ``counts``; None
        (the write is dropped) if they differ."""
        state = self._arenas.get(arena)
        if state is None or state.counts.get(view) is not counts:
            # reloaded or dropped since (a Redis error, a switch of generation, another writer):
            # the write still stands if the view's counts are the ones it was made from
            state = await self._state(arena, [view])
            if state.counts[view] != counts:
                return None
        return ArenaFence(self._store.keys.fence(arena), state.version)

    async def refit_style_boards(self) -> int:
        """Refit the style-controlled twin (``{view}+style``) of every board that got style
        battles since its last fit; returns how many were refitted. Meant to run on a cadence
        (the worker's timer), not after every batch: each fit needs every battle of the board."""
        done = 0
        while self._style_due:
            (arena, view), position = next(iter(self._style_due.items()))
            del self._style_due[(arena, view)]
            try:
                done += await self._refit_style_board(arena, view, position)
            except (aioredis.ConnectionError, aioredis.TimeoutError, OSError):
                self._style_due.setdefault((arena, view), position)  # try again next time
                raise
            except Exception:
                log.exception("style refit of %s failed", board_name(arena, style_view(view)))
        return done

    async def _style_snapshot(self, arena: str, view: str) -> BattleColumns:
        """A copy of the view's style battles as of the cached state (loaded when missing)."""
        return (await self._style_state(arena, view))[1]

    async def _style_state(self, arena: str, view: str) -> tuple[ArenaState, BattleColumns]:
        """The cached state of the arena and a copy of the view's style battles in it."""
        while True:
            state = await self._state(arena, [view])
            columns = state.battles.get(view)
            if columns is None:
                version, columns = await self._store.load_battles(arena, view)
                if version != state.version:  # applied elsewhere meanwhile: reload both
                    self._arenas.pop(arena, None)
                    continue
                state.battles[view] = columns
            return state, columns.snapshot()  # the fit runs in a thread while batches go on

    async def _refit_style_board(self, arena: str, view: str, position: SourcePosition) -> int:
        """Refit one style-controlled board; written only if nobody else applied votes to the
        arena since its battles were read (a worker that lost the partition writes nothing)."""
        board = board_name(arena, style_view(view))
        async with self._lock:
            state, battles = await self._style_state(arena, view)
        if not len(battles):
            return 0
        fit = await asyncio.to_thread(
            fit_contextual, battles, None, self._style, self._style_fits.get(board))
        async with self._lock:
            if self._arenas.get(arena) is not state:  # reloaded meanwhile: refit from the new
                self._style_due.setdefault((arena, view), position)  # state at the next tick
                return 0
            now = self._clock()
            doc = standings_document(arena, style_view(view), fit.board, None, now, position)
            doc["style_coefficients"] = {name: c._asdict() for name, c in fit.coefficients.items()}
            doc["battles"] = fit.battles
            old_rows = self._rows.get(board)
            if old_rows is None:
                stored = await self._store.read_standings(arena, style_view(view))
                old_rows = orjson.loads(stored)["rows"] if stored else []
            if not await self._store.write_style_standings(arena, style_view(view),
                                                           orjson.dumps(doc), state.version):
                log.info("style refit of %s dropped: the arena changed elsewhere", board)
                return 0
            self._style_fits[board] = fit
            self._rows[board] = doc["rows"]
            changes = rank_changes(board, old_rows, doc["rows"], now, position)
        if changes:
            await self._publish_changes([c.model_dump_json().encode() for c in changes])
        return 1

