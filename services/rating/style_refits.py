"""Refitting the style-controlled twin (``{view}+style``) of the boards that got style battles:
on a cadence (the worker's timer), not after every batch, since each fit needs every battle."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime

import orjson
import redis.asyncio as aioredis

from services.rating.counts_applier import CountsApplier
from services.rating.engine import BattleColumns, ContextualFit, StyleOptions, fit_contextual
from services.rating.standings import LastRows, Publish, rank_changes, standings_document
from shared.events import SourcePosition
from shared.keys import board_name, style_view

log = logging.getLogger(__name__)


class StyleRefitter:
    """The boards due a style refit, and the last style fit of each (warm starts). ``lock`` is
    the one batches hold: the cached state is read and checked under it, the fit runs outside
    it in a thread."""

    def __init__(
        self,
        applier: CountsApplier,
        options: StyleOptions,
        clock: Callable[[], datetime],
        last_rows: LastRows,
        publish_rank_changes: Publish,
        lock: asyncio.Lock,
    ) -> None:
        self._applier = applier
        self._options = options
        self._clock = clock
        self._last_rows = last_rows
        self._publish_changes = publish_rank_changes
        self._lock = lock
        self._fits: dict[str, ContextualFit] = {}
        self._due: dict[tuple[str, str], SourcePosition] = {}

    def due(self, arena: str, view: str, position: SourcePosition) -> None:
        """The view got style battles up to ``position``: refit its twin at the next tick."""
        self._due[(arena, view)] = position

    def due_unless_already(self, arena: str, view: str, position: SourcePosition) -> None:
        self._due.setdefault((arena, view), position)

    async def refit_due(self) -> int:
        """Refit every board due; returns how many were refitted. A lost Redis connection is
        raised (the board stays due); any other error is logged and the board dropped."""
        done = 0
        while self._due:
            (arena, view), position = next(iter(self._due.items()))
            del self._due[(arena, view)]
            try:
                done += await self._refit(arena, view, position)
            except (aioredis.ConnectionError, aioredis.TimeoutError, OSError):
                self._due.setdefault((arena, view), position)  # try again next time
                raise
            except Exception:
                log.exception("style refit of %s failed", board_name(arena, style_view(view)))
        return done

    async def snapshot(self, arena: str, view: str) -> BattleColumns:
        """A copy of the view's style battles as of the cached state (loaded when missing)."""
        return (await self._applier.style_state(arena, view))[1]

    async def _refit(self, arena: str, view: str, position: SourcePosition) -> int:
        """Refit one style-controlled board; written only if nobody else applied votes to the
        arena since its battles were read (a worker that lost the partition writes nothing)."""
        board = board_name(arena, style_view(view))
        async with self._lock:
            state, battles = await self._applier.style_state(arena, view)
        if not len(battles):
            return 0
        fit = await asyncio.to_thread(
            fit_contextual, battles, None, self._options, self._fits.get(board))
        async with self._lock:
            if self._applier.cached(arena) is not state:  # reloaded meanwhile: refit from the
                self._due.setdefault((arena, view), position)  # new state at the next tick
                return 0
            now = self._clock()
            doc = standings_document(arena, style_view(view), fit.board, None, now, position)
            doc["style_coefficients"] = {name: c._asdict() for name, c in fit.coefficients.items()}
            doc["battles"] = fit.battles
            store = self._applier.store
            old_rows = await self._last_rows.of(store, arena, style_view(view))
            if not await store.write_style_standings(arena, style_view(view), orjson.dumps(doc),
                                                     state.version):
                log.info("style refit of %s dropped: the arena changed elsewhere", board)
                return 0
            self._fits[board] = fit
            self._last_rows.remember(board, doc["rows"])
            changes = rank_changes(board, old_rows, doc["rows"], now, position)
        if changes:
            await self._publish_changes([c.model_dump_json().encode() for c in changes])
        return 1
