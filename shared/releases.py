"""The releases contract: a dated, immutable snapshot of one board (its standings document as
the rating service wrote it, the registry facts of its models and the methodology settings that
produced it), and the pure helpers over releases the services share: ids, time travel (the
latest release at or before a time), diffs and LMArena's export shape.

A release is written by ingest's admin endpoint (or its schedule) to the compacted releases
topic first, its system of record, then to Redis (services/common/release_records.py); the api
reads it from Redis.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, time
from typing import Annotated, Any

from pydantic import BaseModel, Field, StringConstraints

from shared.events import ModelInfo
from shared.settings import RatingSettings
from shared.standings import StoredRow, StoredStandings

# A release id: letters, digits and . _ - : + (a generated id is ``{arena}.{view}.{stamp}``).
RELEASE_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:+-]{0,127}$"
ReleaseId = Annotated[str, StringConstraints(pattern=RELEASE_ID_PATTERN)]
ID_STAMP = "%Y%m%dT%H%M%SZ"

EXAMPLE_METHODOLOGY: dict[str, Any] = {
    "model": "Bradley-Terry (arena-rank 0.1.1)", "scale": 400.0, "base": 10.0,
    "init_rating": 1000.0, "ties": "half a win each", "ci": "95% sandwich",
    "rank_ub": "1 + models whose CI lies entirely above", "preliminary_votes": 300,
    "fit_tol": 1e-12, "style_reg": 1.0, "style_reweighted": True,
}


def methodology(settings: RatingSettings) -> dict[str, Any]:
    """What produced a board's numbers, as a release records it: the rating worker's settings
    that change them, and the engine's fixed choices (services/rating/worker.py ``tuning``)."""
    return {
        "model": "Bradley-Terry (arena-rank 0.1.1)",
        "scale": 400.0,
        "base": 10.0,
        "init_rating": 1000.0,
        "ties": "half a win each",
        "ci": "95% sandwich",
        "rank_ub": "1 + models whose CI lies entirely above",
        "preliminary_votes": settings.rating_preliminary_votes,
        "fit_tol": settings.rating_fit_tol,
        "style_reg": settings.rating_style_reg,
        "style_reweighted": True,
    }


class ReleaseSummary(BaseModel):
    """A release without its rows (what listings show)."""

    id: ReleaseId = Field(examples=["text.overall.20261201T100000Z"])
    board: str = Field(examples=["text/overall"])
    published_at: str = Field(description="When it was published (UTC, ISO 8601).",
                              examples=["2026-12-01T10:00:00+00:00"])
    updated_at: str = Field(description="When the board's standings it holds were written.")
    note: str | None = Field(default=None, description="The publisher's note.")
    models: int
    votes: int
    leader: str | None = Field(default=None, description="The model ranked first.")


class Release(BaseModel):
    """One board as it stood when published: never changed afterwards."""

    id: ReleaseId
    board: str
    published_at: str
    note: str | None = None
    methodology: dict[str, Any] = Field(
        description="The rating settings that produced the numbers.",
        examples=[EXAMPLE_METHODOLOGY])
    standings: StoredStandings = Field(description="The board's standings document, as the "
                                       "rating service wrote it (unfiltered).")
    registry: dict[str, ModelInfo] = Field(
        default_factory=dict, description="The registry entries of the board's models at the "
        "time (rows are labelled with these, not with today's).")

    def to_json(self) -> bytes:
        """The release as recorded: its standings document in the shape the rating service
        wrote it (only the fields that were set), the registry entries as the registry held
        them."""
        return self.__pydantic_serializer__.to_json(self, exclude_unset=True)

    def summary(self) -> ReleaseSummary:
        rows = self.standings.rows
        return ReleaseSummary(id=self.id, board=self.board, published_at=self.published_at,
                              updated_at=self.standings.updated_at, note=self.note,
                              models=self.standings.models, votes=self.standings.votes,
                              leader=rows[0].model if rows else None)


def release_id(board: str, at: datetime) -> str:
    """The id a release of ``board`` published at ``at`` gets when none is given:
    ``{arena}.{view}.{YYYYmmddTHHMMSSZ}``."""
    return f"{board.replace('/', '.')}.{at.astimezone(UTC).strftime(ID_STAMP)}"


def parse_instant(value: str) -> datetime | None:
    """An ISO 8601 date or time as an aware UTC datetime (a naive time is UTC; a date alone
    means its last instant, UTC: "as of that day"; a ``+`` that a query string turned into a
    space is read back), or None when ``value`` is not one."""
    value = value.strip().replace(" ", "+")
    try:
        day = date.fromisoformat(value)
    except ValueError:
        pass
    else:
        return datetime.combine(day, time.max, UTC)
    try:
        at = datetime.fromisoformat(value)
        return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
    except (ValueError, OverflowError):  # not a date; or one past year 9999 in UTC
        return None


def instant(iso: str) -> datetime:
    """A stored ISO timestamp as an aware datetime."""
    found = parse_instant(iso)
    if found is None:
        raise ValueError(f"not an ISO timestamp: {iso!r}")
    return found


def latest_at(summaries: Sequence[ReleaseSummary], at: datetime) -> ReleaseSummary | None:
    """The latest release published at or before ``at`` (None: none was)."""
    before = [s for s in summaries if instant(s.published_at) <= at]
    return max(before, key=lambda s: (instant(s.published_at), s.id), default=None)


def newest_first(summaries: Sequence[ReleaseSummary]) -> list[ReleaseSummary]:
    return sorted(summaries, key=lambda s: (instant(s.published_at), s.id), reverse=True)


class Move(BaseModel):
    """One model present in both releases: where it was and where it is."""

    model: str
    rank_from: int
    rank_to: int
    rank_change: int = Field(description="Places gained (positive: moved up).")
    rank_ub_from: int
    rank_ub_to: int
    score_from: float
    score_to: float
    score_change: float


class Entry(BaseModel):
    """A model present in only one of the two releases."""

    model: str
    rank: int
    score: float


class ReleaseDiff(BaseModel):
    """What changed on a board between two of its releases."""

    board: str
    from_release: ReleaseSummary
    to_release: ReleaseSummary
    moved: list[Move] = Field(description="Models whose rank changed, biggest moves first.")
    unchanged: list[Move] = Field(description="Models in both whose rank did not change.")
    new: list[Entry] = Field(description="Models only in the later release.")
    retired: list[Entry] = Field(description="Models only in the earlier release.")


def diff(older: Release, newer: Release) -> ReleaseDiff:
    """Who moved between two releases of one board, by how much; new and retired models."""
    before = {r.model: r for r in older.standings.rows}
    after = {r.model: r for r in newer.standings.rows}
    moves = [_move(before[m], after[m]) for m in after if m in before]
    return ReleaseDiff(
        board=newer.board, from_release=older.summary(), to_release=newer.summary(),
        moved=sorted((m for m in moves if m.rank_change),
                     key=lambda m: (-abs(m.rank_change), m.rank_to, m.model)),
        unchanged=sorted((m for m in moves if not m.rank_change), key=lambda m: m.rank_to),
        new=[_entry(r) for r in newer.standings.rows if r.model not in before],
        retired=[_entry(r) for r in older.standings.rows if r.model not in after],
    )


def _move(old: StoredRow, new: StoredRow) -> Move:
    return Move(model=new.model, rank_from=old.rank, rank_to=new.rank,
                rank_change=old.rank - new.rank, rank_ub_from=old.rank_ub,
                rank_ub_to=new.rank_ub, score_from=old.score, score_to=new.score,
                score_change=round(new.score - old.score, 6))


def _entry(row: StoredRow) -> Entry:
    return Entry(model=row.model, rank=row.rank, score=row.score)


def lmarena_json(board: str, rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """LMArena's published shape of a leaderboard (the columns of ``leaderboard_table_df`` in
    its ``elo_results_{date}.pkl``, as JSON): ``{board: {model: {rating, rating_q025,
    rating_q975, num_battles, final_ranking}}}``, best first. ``rating_q025``/``rating_q975``
    are the CI's ends (``ci_low``/``ci_high``), ``num_battles`` the votes, ``final_ranking``
    the published rank (``rank_ub``)."""
    return {board: {str(r["model"]): {
        "rating": r["score"], "rating_q025": r["ci_low"], "rating_q975": r["ci_high"],
        "num_battles": r["votes"], "final_ranking": r["rank_ub"],
    } for r in rows}}
