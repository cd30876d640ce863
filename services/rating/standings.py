"""A board's standings as the worker writes them: the document made from a fit, in the shape of
``shared.standings.StoredStandings`` (the contract the api serves), the rows of the last one
written, and the rank changes between.

The worker builds plain dicts and writes them with orjson: through the pydantic models a refit
cost the worker ~20 % more CPU per vote (bench/worker_cpu.py; docs/decisions.md). That they are
the contract, byte for byte, is tested (tests/unit/test_standings_contract.py, and the e2e tests
check what the running worker wrote)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

import orjson

from services.rating.engine import BoardFit
from services.rating.engine.significance import RankMoves
from services.rating.store import RatingStore
from shared.events import RankChange, SourcePosition
from shared.keys import board_name

Publish = Callable[[Sequence[bytes]], Awaitable[None]]  # values to a Kafka topic, acked


def standings_rows(fit: BoardFit, elo: Mapping[str, float] | None = None,
                   margins: Sequence[int | None] | None = None) -> list[dict[str, Any]]:
    """The fit's rows (``StoredRow``), sorted by score descending; with each model's online Elo
    when given (style-controlled boards have none), and each row's ``margin_votes`` when given
    (``engine.robustness.rank_margins``, in the same order)."""
    models, rank, rank_ub = fit.models, fit.rank.tolist(), fit.rank_ub.tolist()
    scores, ci_low, ci_high = fit.scores.tolist(), fit.ci_low.tolist(), fit.ci_high.tolist()
    votes, wins, losses = fit.votes.tolist(), fit.wins.tolist(), fit.losses.tolist()
    ties, preliminary = fit.ties.tolist(), fit.preliminary.tolist()
    rows = [{"model": models[i], "rank": rank[i], "rank_ub": rank_ub[i], "score": scores[i],
             "ci_low": ci_low[i], "ci_high": ci_high[i], "votes": votes[i], "wins": wins[i],
             "losses": losses[i], "ties": ties[i], "preliminary": preliminary[i]}
            for i in fit.order().tolist()]
    if elo is not None:
        for row in rows:
            row["elo"] = elo.get(row["model"], fit.options.init_rating)
    if margins is not None:
        for row, margin in zip(rows, margins, strict=True):
            row["margin_votes"] = margin
    return rows


def standings_document(
    arena: str,
    view: str,
    fit: BoardFit,
    elo: Mapping[str, float] | None,
    updated_at: datetime,
    position: SourcePosition | None,
    margins: Sequence[int | None] | None = None,
) -> dict[str, Any]:
    """The board's ``StoredStandings`` document."""
    rows = standings_rows(fit, elo, margins)
    return {
        "board": board_name(arena, view),
        "arena": arena,
        "view": view,
        "updated_at": updated_at.isoformat(),
        "models": len(rows),
        "votes": int(sum(r["wins"] + r["losses"] + r["ties"] for r in rows) // 2),
        "converged": bool(fit.converged),
        "connected": bool(fit.connected),
        "position": position.model_dump() if position else None,
        "rows": rows,
    }


def rank_changes(
    board: str,
    old_rows: Sequence[Mapping[str, Any]],
    new_rows: Sequence[Mapping[str, Any]],
    now: datetime,
    position: SourcePosition,
    moves: RankMoves | None = None,
) -> list[RankChange]:
    """One RankChange per model whose rank or published rank differs from the previous
    standings, that is new, or whose overtake of another got confirmed; classified and damped
    by ``moves`` (``engine.significance``; it remembers the board's settled pairs)."""
    changes = []
    for move in (moves or RankMoves()).moves(board, old_rows, new_rows, now.timestamp()):
        old, row = move.old, move.new
        changes.append(
            RankChange(
                board=board,
                model=move.model,
                old_rank=None if old is None else int(old["rank"]),
                new_rank=int(row["rank"]),
                old_score=None if old is None else float(old["score"]),
                new_score=float(row["score"]),
                rank_ub=int(row["rank_ub"]),
                old_rank_ub=None if old is None else int(old["rank_ub"]),
                votes=int(row["votes"]),
                timestamp=now,
                position=position,
                significance=move.significance,
                damped=move.damped,
                passed=list(move.passed),
            )
        )
    return changes


class LastRows:
    """The rows of each board's standings as last written by this worker (what its next refit
    diffs ranks against); read from Redis the first time a board is refitted. ``moves``: what
    the classification of rank changes remembers (settled pairs, recent announcements)."""

    def __init__(self, moves: RankMoves | None = None) -> None:
        self._rows: dict[str, list[dict[str, Any]]] = {}
        self.moves = moves or RankMoves()

    async def of(self, store: RatingStore, arena: str, view: str) -> list[dict[str, Any]]:
        rows = self._rows.get(board_name(arena, view))
        if rows is None:
            stored = await store.read_standings(arena, view)
            rows = orjson.loads(stored)["rows"] if stored else []
        return rows

    def remember(self, board: str, rows: list[dict[str, Any]]) -> None:
        self._rows[board] = rows
