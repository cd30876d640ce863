"""What a rank change means, and how often a subscriber hears of the same one.

A refit reorders models all the time: two neighbours whose confidence intervals overlap swap
places whenever a few votes tip the point estimates. Such a swap is real (the score order did
change) but says nothing a reader should act on. Three kinds, strongest first:

``published``
    The published rank moved: LMArena publishes the rank upper bound (``rank_ub``: one plus the
    number of models whose lower bound is above this model's upper bound), or the model is new
    on the board.
``separated``
    An overtake is confirmed: the model's interval is now wholly above that of a model which
    was ahead of it the last time the two were apart (or, if they never were, in the previous
    standings). A gradual overtake is first a quiet reordering inside overlapping intervals;
    it is announced at the refit where the intervals separate.
``reordered``
    The score order changed within overlapping intervals only.

Hysteresis: the same move (a model's published rank going from one value to another, or one
model passing another) is announced at most once per window each way, so two near-equal
models flipping back and forth cannot flood a feed. A damped change is still a change (the raw
feed carries it), marked so that the filtered feeds leave it out.

Pure logic with memory: rows in, classified moves out; the caller gives the clock.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from shared.events import Significance

Row = Mapping[str, Any]  # a standings row: model, rank, rank_ub, score, ci_low, ci_high, ...


@dataclass(frozen=True)
class Move:
    """One model's change between two standings, classified."""

    model: str
    significance: Significance
    old: Row | None  # its row in the old standings (None: new on the board)
    new: Row
    passed: tuple[str, ...] = ()  # models it moved ahead of, best first
    keys: tuple[Hashable, ...] = ()  # what the damper remembers of this move
    damped: bool = False


@dataclass
class _Settled:
    """Of each pair of a board's models, which one was ahead the last time their intervals
    were apart: ``ahead[i, j]`` is 1 when model i was, -1 when model j was, 0 never apart."""

    index: dict[str, int] = field(default_factory=dict)
    ahead: npt.NDArray[np.int8] = field(default_factory=lambda: np.zeros((0, 0), np.int8))

    def indices(self, models: Sequence[str]) -> npt.NDArray[np.intp]:
        for model in models:
            if model not in self.index:
                self.index[model] = len(self.index)
        n = len(self.index)
        if n > self.ahead.shape[0]:
            grown = np.zeros((max(n, 2 * self.ahead.shape[0]),) * 2, np.int8)
            grown[: self.ahead.shape[0], : self.ahead.shape[1]] = self.ahead
            self.ahead = grown
        return np.fromiter((self.index[m] for m in models), np.intp, len(models))


class RankMoves:
    """Classifies each refit's rank changes (``moves``) and damps repeats. One per worker;
    what it remembers (settled pairs, recent announcements) is per board, and forgetting it
    (a restart) costs at most one more announcement per move."""

    def __init__(self, window_s: float = 0.0, max_keys: int = 100_000) -> None:
        self.window_s = window_s
        self._max_keys = max_keys
        self._last: dict[tuple[str, Hashable], float] = {}
        self._settled: dict[str, _Settled] = {}

    def moves(self, board: str, old_rows: Sequence[Row], new_rows: Sequence[Row],
              now: float) -> list[Move]:
        """One Move per model of ``new_rows`` whose rank or published rank differs from
        ``old_rows``, that is new, or whose overtake of another is confirmed; in the order of
        ``new_rows``."""
        before = {r["model"]: r for r in old_rows}
        confirmed = self._confirmed_overtakes(board, before, new_rows)
        moves = []
        for row in new_rows:
            model = row["model"]
            old = before.get(model)
            passed = confirmed.get(model, ())
            if old is None:
                moves.append(Move(model, "published", None, row, keys=(("new", model),)))
            elif old["rank_ub"] != row["rank_ub"]:
                key = ("published", model, int(old["rank_ub"]), int(row["rank_ub"]))
                moves.append(Move(model, "published", old, row, passed, (key,)))
            elif passed:
                keys = tuple(("passes", model, other) for other in passed)
                moves.append(Move(model, "separated", old, row, passed, keys))
            elif old["rank"] != row["rank"]:
                moves.append(Move(model, "reordered", old, row))
        return self._damp(board, moves, now)

    def _confirmed_overtakes(self, board: str, before: Mapping[str, Row],
                             new_rows: Sequence[Row]) -> dict[str, tuple[str, ...]]:
        """model -> the models it is now apart above and that were ahead of it the last time
        the two were apart (never apart: in ``before``), best first; remembers who is ahead
        of each pair apart now."""
        if len(new_rows) < 2:
            return {}
        settled = self._settled.setdefault(board, _Settled())
        models = [r["model"] for r in new_rows]
        idx = settled.indices(models)
        low = np.array([float(r["ci_low"]) for r in new_rows])
        high = np.array([float(r["ci_high"]) for r in new_rows])
        apart = low[:, None] > high[None, :]  # apart[i, j]: i's interval wholly above j's
        last = settled.ahead[np.ix_(idx, idx)]
        old_rank = np.array([float(before[m]["rank"]) if m in before else math.nan
                             for m in models])
        was_behind = old_rank[:, None] > old_rank[None, :]  # False where either is new
        overtook = apart & ((last == -1) | ((last == 0) & was_behind))
        settled.ahead[np.ix_(idx, idx)] = np.where(apart, 1, np.where(apart.T, -1, last))
        out: dict[str, tuple[str, ...]] = {}
        for i, j in zip(*np.nonzero(overtook), strict=True):
            out.setdefault(models[i], ())
            out[models[i]] += (models[j],)
        return out

    def _damp(self, board: str, moves: list[Move], now: float) -> list[Move]:
        """Mark moves that repeat one announced less than the window ago; announce (remember)
        the others. A move of several keys (a model passing two others) is damped only if
        every one of them is."""
        if self.window_s <= 0:
            return moves
        out = []
        for move in moves:
            damped = bool(move.keys) and all(
                now - self._last.get((board, key), -math.inf) < self.window_s
                for key in move.keys)
            out.append(Move(move.model, move.significance, move.old, move.new, move.passed,
                            move.keys, damped))
        for move in out:
            if not move.damped:
                for key in move.keys:
                    self._last[(board, key)] = now
        if len(self._last) > self._max_keys:
            cutoff = now - self.window_s
            self._last = {k: t for k, t in self._last.items() if t >= cutoff}
        return out
