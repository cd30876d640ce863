"""A board's standings as the worker writes them: the document made from a fit
(``shared.standings.StoredStandings``, the contract the api serves), the rows of the last one
written, and the rank changes between."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

import orjson
from pydantic import TypeAdapter

from services.rating.engine import BoardFit
from services.rating.store import RatingStore
from shared.events import RankChange, SourcePosition
from shared.keys import board_name
from shared.standings import HistoryPoint, StoredRow, StoredStandings

Publish = Callable[[Sequence[bytes]], Awaitable[None]]  # values to a Kafka topic, acked
# a row as the worker has it, or as a benchmark board's code still builds it (a plain mapping)
RowLike = StoredRow | Mapping[str, Any]

_ROWS: TypeAdapter[list[StoredRow]] = TypeAdapter(list[StoredRow])


def standings_rows(fit: BoardFit, elo: Mapping[str, float] | None = None) -> list[StoredRow]:
    """The fit's rows sorted by score descending; with each model's online Elo when given
    (style-controlled boards have none). Validated in one call: a row at a time cost a refit
    of 300 models ~3x the time of writing its document."""
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
    return _ROWS.validate_python(rows)


def standings_document(
    arena: str,
    view: str,
    fit: BoardFit,
    elo: Mapping[str, float] | None,
    updated_at: datetime,
    position: SourcePosition | None,
) -> StoredStandings:
    rows = standings_rows(fit, elo)
    return StoredStandings(
        board=board_name(arena, view),
        arena=arena,
        view=view,
        updated_at=updated_at.isoformat(),
        models=len(rows),
        votes=int(sum(r.wins + r.losses + r.ties for r in rows) // 2),
        converged=bool(fit.converged),
        connected=bool(fit.connected),
        position=position,
        rows=rows,
    )


def as_row(row: RowLike) -> StoredRow:
    return row if isinstance(row, StoredRow) else StoredRow.model_validate(row)


def history_point(row: RowLike, at: datetime, changed: bool) -> bytes:
    """A model's history point from its row, as stored."""
    return HistoryPoint.of(as_row(row), at.isoformat(), changed).model_dump_json().encode()


def rank_changes(
    board: str,
    old_rows: Sequence[RowLike],
    new_rows: Sequence[RowLike],
    now: datetime,
    position: SourcePosition,
) -> list[RankChange]:
    """One RankChange per model whose rank differs from the previous standings (or is new)."""
    before = {r.model: r for r in map(as_row, old_rows)}
    changes = []
    for row in map(as_row, new_rows):
        old = before.get(row.model)
        if old is not None and old.rank == row.rank:
            continue
        changes.append(
            RankChange(
                board=board,
                model=row.model,
                old_rank=None if old is None else old.rank,
                new_rank=row.rank,
                old_score=None if old is None else old.score,
                new_score=row.score,
                rank_ub=row.rank_ub,
                votes=row.votes,
                timestamp=now,
                position=position,
            )
        )
    return changes


class LastRows:
    """The rows of each board's standings as last written by this worker (what its next refit
    diffs ranks against); read from Redis the first time a board is refitted."""

    def __init__(self) -> None:
        self._rows: dict[str, Sequence[StoredRow]] = {}

    async def of(self, store: RatingStore, arena: str, view: str) -> Sequence[StoredRow]:
        rows = self._rows.get(board_name(arena, view))
        if rows is None:
            stored = await store.read_standings(arena, view)
            rows = _ROWS.validate_python(orjson.loads(stored)["rows"]) if stored else []
        return rows

    def remember(self, board: str, rows: Sequence[StoredRow]) -> None:
        self._rows[board] = rows
