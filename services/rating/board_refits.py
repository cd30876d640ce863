"""Refitting the vote boards a batch touched: fit, standings written, rank changes diffed, and
the read models (matrices, history) handed what they need."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from datetime import datetime

import orjson

from services.common.redis_client import REDIS_RETRYABLE
from services.rating.counts_applier import CountsApplier
from services.rating.engine import BoardFit, FitOptions, fit_board, rank_margins
from services.rating.read_models import ReadModelWriter
from services.rating.standings import LastRows, rank_changes, standings_document
from shared.events import RankChange, SourcePosition
from shared.keys import board_name, is_style_view

log = logging.getLogger(__name__)

Boards = dict[tuple[str, str], SourcePosition]  # (arena, view) -> position of its last vote


class BoardRefitter:
    """The last fit of each board (the warm start of its next fit, and what the voter screen's
    win probabilities come from)."""

    def __init__(
        self,
        applier: CountsApplier,
        options: FitOptions,
        clock: Callable[[], datetime],
        last_rows: LastRows,
        read_models: ReadModelWriter | None,
    ) -> None:
        self._applier = applier
        self._options = options
        self._clock = clock
        self._last_rows = last_rows
        self._read_models = read_models
        self._fits: dict[str, BoardFit] = {}

    @property
    def fits(self) -> Mapping[str, BoardFit]:
        """board -> its last fit (a live view)."""
        return self._fits

    async def refit(self, boards: Boards, changes: list[RankChange]) -> None:
        """Refit the boards a batch touched; their Redis writes overlap (a batch touches dozens
        of boards, and one after the other their round trips were most of a batch's time).
        Rank changes are added to ``changes``. One broken board does not stop the others; a lost
        Redis connection is raised once every board has finished, after the rank changes of
        those refitted are added (the caller publishes them: they will not diff again)."""
        views_of: dict[str, list[str]] = {}
        for arena, view in boards:
            views_of.setdefault(arena, []).append(view)
        for arena, views in views_of.items():  # loaded first: the refits then share it as is
            await self._applier.state(arena, views)
        results = await asyncio.gather(
            *(self._refit_board(arena, view, position)
              for (arena, view), position in boards.items()),
            return_exceptions=True,
        )
        lost: BaseException | None = None
        for (arena, view), result in zip(boards, results, strict=True):
            if isinstance(result, asyncio.CancelledError):
                raise result
            if isinstance(result, REDIS_RETRYABLE):
                lost = lost or result
            elif isinstance(result, BaseException):
                log.error("refit of %s failed", board_name(arena, view), exc_info=result)
            else:
                changes.extend(result)
        if lost is not None:
            raise lost

    async def positions_of_all_boards(self, touched: Boards) -> Boards:
        """Every vote board of the key space not in ``touched``, with the position its
        standings were computed at (boards never written are left out)."""
        store = self._applier.store
        out: Boards = {}
        for arena, view in await store.boards():
            if (arena, view) in touched or is_style_view(view):
                continue
            stored = await store.read_standings(arena, view)
            position = orjson.loads(stored).get("position") if stored else None
            if position is not None:
                out[(arena, view)] = SourcePosition.model_validate(position)
        return out

    async def _refit_board(
        self, arena: str, view: str, position: SourcePosition
    ) -> list[RankChange]:
        """Refit one board and write its standings; returns its rank changes (published by the
        caller, once for the batch)."""
        board = board_name(arena, view)
        state = await self._applier.state(arena, [view])
        counts = state.counts[view]
        fit = fit_board(counts, self._options, warm_start=self._fits.get(board))
        elo = state.elo[view]
        now = self._clock()
        doc = standings_document(arena, view, fit, elo, now, position, rank_margins(counts, fit))
        store = self._applier.store
        old_rows = await self._last_rows.of(store, arena, view)
        await store.write_standings(arena, view, orjson.dumps(doc))
        self._fits[board] = fit
        self._last_rows.remember(board, doc["rows"])
        changes: list[RankChange] = rank_changes(board, old_rows, doc["rows"], now, position,
                                     self._last_rows.moves)
        if self._read_models is not None:
            await self._read_models.after_refit(arena, view, counts, fit, doc["rows"], changes, now)
        return changes
