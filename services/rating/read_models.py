"""What the rating service writes for the read side besides standings: the pairwise matrices of
a board and each model's history points. Called after every refit (services/rating/processor.py)
and after every benchmark update (services/rating/scores.py)."""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from importlib.resources import files
from typing import Any

import numpy as np
import orjson

from services.common.redis_client import RedisClient
from services.rating.engine import (
    BoardFit,
    PairCounts,
    models_with_a_score,
    predicted_win_matrix,
    win_rate_matrix,
)
from services.rating.sampling_models import SamplingModels
from services.rating.store import VERSION_FIELD
from shared.events import RankChange
from shared.keys import KeyLayout, board_name

log = logging.getLogger(__name__)

WRITE_OWED_SCRIPT = files("services.rating").joinpath("write_owed.lua").read_text()


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


def history_point(
    row: Mapping[str, Any], at: datetime, changed: bool, scored: bool = True
) -> dict[str, Any]:
    """A ``HistoryPoint``; ``scored`` False when the fit had no finite score for the model
    (``engine.models_with_a_score``)."""
    return {
        "at": at.isoformat(),
        "score": row["score"],
        "ci_low": row["ci_low"],
        "ci_high": row["ci_high"],
        "rank": row["rank"],
        "rank_ub": row["rank_ub"],
        "votes": row["votes"],
        "rank_change": changed,
        "mle_exists": scored,
    }


def unscored_models(counts: PairCounts, fit: BoardFit) -> frozenset[str]:
    """The models whose score the fit got from its ridge, not the votes (none when the MLE
    exists: the usual case costs nothing)."""
    if fit.mle_exists or counts.models != fit.models:
        return frozenset()
    scored = models_with_a_score(counts).tolist()
    return frozenset(m for m, s in zip(counts.models, scored, strict=True) if not s)


@dataclass(frozen=True)
class ArenaFence:
    """Where an arena's version is kept (its fence hash) and the version a worker's cached state
    of the arena is at: owed read models are written only while Redis still holds that version."""

    key: str
    version: int


# (arena, view, the counts an owed write was made from) -> the arena's fence, or None when the
# arena's counts of the view are no longer those (the owed write is then dropped)
FenceOf = Callable[[str, str, PairCounts], Awaitable[ArenaFence | None]]


@dataclass
class _Owed:
    """What a board's last refit did not write: its matrices (inside their interval) and/or
    history points (models inside theirs). Kept until due, then written by ``flush``."""

    arena: str
    view: str
    counts: PairCounts  # the worker's cached counts of the board (updated in place)
    fit: BoardFit
    rows: Sequence[Mapping[str, Any]]
    at: datetime  # when the refit happened: the time of its matrices and history points
    tick: float  # the same, monotonic; a model whose last point is older is owed one
    matrices: bool
    history_due: float  # earliest time an owed point is due (inf: none is owed)
    unscored: frozenset[str] = frozenset()  # models without a finite score in ``fit``


class ReadModelWriter:
    """Writes matrices and history points. Remembers when each model last got a point, so that
    outside rank changes a model gets at most one point per ``history_interval_s``.

    What a refit leaves unwritten (matrices inside ``matrices_interval_s``, points inside
    ``history_interval_s``) is owed: ``flush`` writes it once due, so that a board whose votes
    stop ends with matrices and a history point of its last state (the worker's timer calls it;
    see ``services/rating/worker.py``)."""

    def __init__(
        self,
        client: RedisClient,
        keys: KeyLayout,
        history_interval_s: float,
        history_max_points: int,
        monotonic: Callable[[], float],
        matrices_interval_s: float = 1.0,
        sampling: SamplingModels | None = None,
    ) -> None:
        self._redis = client
        self._keys = keys
        self._interval = history_interval_s
        self._max_points = history_max_points
        self._monotonic = monotonic
        self._last_point: dict[tuple[str, str], float] = {}  # (board, model) -> monotonic time
        self._matrices_interval = matrices_interval_s
        self._last_matrices: dict[str, float] = {}  # board -> monotonic time
        self._owed: dict[str, _Owed] = {}  # board -> what its last refit left unwritten
        self._write_owed = client.register_script(WRITE_OWED_SCRIPT)
        self._sampling = sampling

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
        write of a refit and nobody needs them every 50 ms. What is left unwritten is owed."""
        board = board_name(arena, view)
        if self._sampling is not None:
            self._sampling.offer(arena, view, counts, fit)
        tick = self._monotonic()
        last = self._last_matrices.get(board)
        matrices_owed = not (last is None or tick - last >= self._matrices_interval)
        if not matrices_owed:
            await self.write_matrices(arena, view, counts, fit, now)
            self._last_matrices[board] = tick
        unscored = unscored_models(counts, fit)
        _, history_due = await self._record_history(arena, view, rows, changes, now, tick,
                                                     unscored)
        if matrices_owed or history_due < math.inf:
            self._owed[board] = _Owed(arena, view, counts, fit, rows, now, tick, matrices_owed,
                                      history_due, unscored)
        elif board in self._owed:
            del self._owed[board]

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
        written, _ = await self._record_history(arena, view, rows, changes, now,
                                                self._monotonic())
        return written

    async def _record_history(
        self,
        arena: str,
        view: str,
        rows: Sequence[Mapping[str, Any]],
        changes: Sequence[RankChange],
        now: datetime,
        tick: float,
        unscored: frozenset[str] = frozenset(),
    ) -> tuple[int, float]:
        """Write the points due at ``tick``; returns how many, and when the first of the
        others is due (inf if every row got a point)."""
        board = board_name(arena, view)
        changed = {c.model for c in changes}
        due_rows = []
        oldest = math.inf  # the oldest last point of the models left without one
        for row in rows:
            model = str(row["model"])
            last = self._last_point.get((board, model))
            if model in changed or last is None or tick - last >= self._interval:
                due_rows.append((model, row))
            elif last < oldest:
                oldest = last
        if not due_rows:  # the usual case between rank changes: no pipeline at all
            return 0, oldest + self._interval
        async with self._redis.pipeline(transaction=False) as pipe:
            for model, row in due_rows:
                key = self._keys.history(arena, view, model)
                point = history_point(row, now, model in changed, model not in unscored)
                pipe.rpush(key, orjson.dumps(point))
                pipe.ltrim(key, -self._max_points, -1)
                self._last_point[(board, model)] = tick
            await pipe.execute()
        return len(due_rows), oldest + self._interval

    def owed_due_in(self) -> float | None:
        """Seconds until the earliest owed write is due (0 when one is), None if nothing is
        owed."""
        if not self._owed:
            return None
        earliest = min(self._due_at(board, owed) for board, owed in self._owed.items())
        return max(0.0, earliest - self._monotonic())

    async def flush(self, fence_of: FenceOf, everything: bool = False) -> int:
        """Write what is owed and due (everything owed with ``everything``: at shutdown), each
        board in one atomic step that writes only if its arena is still at the version
        ``fence_of`` gives; a board whose counts have changed elsewhere, or whose arena has
        moved on, is dropped (whoever changed it writes its own). Returns how many boards were
        written."""
        written = 0
        for board, owed in list(self._owed.items()):
            tick = self._monotonic()
            matrices = owed.matrices and (
                everything or tick >= self._last_matrices[board] + self._matrices_interval)
            history = owed.history_due < math.inf and (everything or tick >= owed.history_due)
            if not matrices and not history:
                continue
            if matrices and owed.counts.models != owed.fit.models:  # its last refit failed
                matrices = owed.matrices = False
            points = self._owed_points(board, owed, tick, everything) if history else []
            if matrices or points:
                fence = await fence_of(owed.arena, owed.view, owed.counts)
                if fence is None or not await self._write_fenced(fence, owed, matrices, points):
                    log.info("owed read models of %s dropped: its arena changed since", board)
                    self._settle(board, owed)
                    continue
                written += 1
            if matrices:
                self._last_matrices[board] = tick
                owed.matrices = False
            for model, _ in points:
                self._last_point[(board, model)] = tick
            if history:  # the models still owed a point are due later, if any
                owed.history_due = min((last + self._interval
                                        for _, last, _ in self._pending(board, owed)),
                                       default=math.inf)
            if not owed.matrices and owed.history_due == math.inf:
                self._settle(board, owed)
        return written

    def _settle(self, board: str, owed: _Owed) -> None:
        if self._owed.get(board) is owed:  # not replaced by a refit meanwhile
            del self._owed[board]

    def _pending(
        self, board: str, owed: _Owed
    ) -> list[tuple[str, float, Mapping[str, Any]]]:
        """(model, time of its last point, row) of each model of the owed rows without a point
        of them (its last point is older than the refit)."""
        out = []
        for row in owed.rows:
            model = str(row["model"])
            last = self._last_point.get((board, model))
            if last is None or last < owed.tick:
                out.append((model, -math.inf if last is None else last, row))
        return out

    def _due_at(self, board: str, owed: _Owed) -> float:
        if owed.matrices:
            return min(owed.history_due, self._last_matrices[board] + self._matrices_interval)
        return owed.history_due

    def _owed_points(
        self, board: str, owed: _Owed, tick: float, everything: bool
    ) -> list[tuple[str, bytes]]:
        """(model, point) of each owed history point due at ``tick`` (every one with
        ``everything``)."""
        return [(model, orjson.dumps(history_point(row, owed.at, False,
                                                   model not in owed.unscored)))
                for model, last, row in self._pending(board, owed)
                if everything or tick - last >= self._interval]

    async def _write_fenced(
        self, fence: ArenaFence, owed: _Owed, matrices: bool, points: list[tuple[str, bytes]]
    ) -> bool:
        doc = b""
        if matrices:
            doc = orjson.dumps(matrices_document(owed.arena, owed.view, owed.counts, owed.fit,
                                                 owed.at))
        keys = [fence.key, self._keys.matrices(owed.arena, owed.view),
                *(self._keys.history(owed.arena, owed.view, model) for model, _ in points)]
        args: list[str | int | bytes] = [VERSION_FIELD, fence.version, doc, self._max_points,
                                         *(point for _, point in points)]
        return bool(await self._write_owed(keys=keys, args=args))
