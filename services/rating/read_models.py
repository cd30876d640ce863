"""What the rating service writes for the read side besides standings: the pairwise matrices of
a board and each model's history points. Called after every refit (services/rating/processor.py)
and after every benchmark update (services/rating/scores.py)."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

import numpy as np
import orjson
import redis.asyncio as aioredis

from services.rating.engine import BoardFit, PairCounts, predicted_win_matrix, win_rate_matrix
from shared.events import RankChange
from shared.keys import KeyLayout, board_name


def matrices_document(
    arena: str, view: str, counts: PairCounts, fit: BoardFit, updated_at: datetime
) -> dict[str, Any]:
    """Win-rate, predicted-win, battle and win matrices, models ordered by rank (best first).

    ``win_rate[i][j]`` is null where i and j never met; ``wins[i][j]`` counts i's wins over j.
    """
    if counts.models != fit.models:
        raise ValueError("counts and fit must cover the same models")
    order = fit.order()
    grid = np.ix_(order, order)
    rate = win_rate_matrix(counts)[grid]
    return {
        "board": board_name(arena, view),
        "updated_at": updated_at.isoformat(),
        "models": [fit.models[i] for i in order],
        "win_rate": [[None if math.isnan(x) else round(x, 5) for x in row] for row in
                     rate.tolist()],
        "predicted": np.round(predicted_win_matrix(fit)[grid], 5).tolist(),
        "battles": counts.battles()[grid].tolist(),
        "wins": counts.wins()[grid].tolist(),
    }


def history_point(row: Mapping[str, Any], at: datetime, changed: bool) -> dict[str, Any]:
    return {
        "at": at.isoformat(),
        "score": row["score"],
        "ci_low": row["ci_low"],
        "ci_high": row["ci_high"],
        "rank": row["rank"],
        "rank_ub": row["rank_ub"],
        "votes": row["votes"],
        "rank_change": changed,
    }


class ReadModelWriter:
    """Writes matrices and history points. Remembers when each model last got a point, so that
    outside rank changes a model gets at most one point per ``history_interval_s``."""

    def __init__(
        self,
        client: aioredis.Redis,
        keys: KeyLayout,
        history_interval_s: float,
        history_max_points: int,
        monotonic: Callable[[], float],
        matrices_interval_s: float = 1.0,
    ) -> None:
        self._redis = client
        self._keys = keys
        self._interval = history_interval_s
        self._max_points = history_max_points
        self._monotonic = monotonic
        self._last_point: dict[tuple[str, str], float] = {}  # (board, model) -> monotonic time
        self._matrices_interval = matrices_interval_s
        self._last_matrices: dict[str, float] = {}  # board -> monotonic time

    async def after_refit(
        self,
        arena: str,
        view: str,
        counts: PairCounts,
        fit: BoardFit,
        rows: Sequence[Mapping[str, Any]],
        changes: Sequence[RankChange],
        now: datetime,
    ) -> None:
        """Everything the read side needs from one refit of a vote board. The M x M matrices
        are rewritten at most once per ``matrices_interval_s`` per board: they are the largest
        write of a refit and nobody needs them every 50 ms."""
        board = board_name(arena, view)
        tick = self._monotonic()
        last = self._last_matrices.get(board)
        if last is None or tick - last >= self._matrices_interval:
            await self.write_matrices(arena, view, counts, fit, now)
            self._last_matrices[board] = tick
        await self.record_history(arena, view, rows, changes, now)

    async def write_matrices(
        self, arena: str, view: str, counts: PairCounts, fit: BoardFit, now: datetime
    ) -> None:
        doc = matrices_document(arena, view, counts, fit, now)
        await self._redis.set(self._keys.matrices(arena, view), orjson.dumps(doc))

    async def record_history(
        self,
        arena: str,
        view: str,
        rows: Sequence[Mapping[str, Any]],
        changes: Sequence[RankChange],
        now: datetime,
    ) -> int:
        """Append a point for each model whose rank changed, or whose last point is older than
        the interval; returns how many points were written."""
        board = board_name(arena, view)
        changed = {c.model for c in changes}
        tick = self._monotonic()
        due_rows = []
        for row in rows:
            model = str(row["model"])
            last = self._last_point.get((board, model))
            if model in changed or last is None or tick - last >= self._interval:
                due_rows.append((model, row))
        if not due_rows:  # the usual case between rank changes: no pipeline at all
            return 0
        async with self._redis.pipeline(transaction=False) as pipe:
            for model, row in due_rows:
                key = self._keys.history(arena, view, model)
                pipe.rpush(key, orjson.dumps(history_point(row, now, model in changed)))
                pipe.ltrim(key, -self._max_points, -1)
                self._last_point[(board, model)] = tick
            await pipe.execute()
        return len(due_rows)
