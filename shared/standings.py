"""The standings contract: the document the rating service writes for each board (its rows, and
the style coefficients of a style-controlled board) and the history points it records.

The rating service writes its documents as ``StoredStandings`` serialises them (``to_json``),
byte for byte; it builds them as plain dicts (through the models it spent ~20 % more CPU per
vote), and the tests hold those bytes to these models (services/rating/standings.py). The api serves
the stored bytes as they are, its rows labelled with registry facts (the fast read path does
not validate them again): ``Standings`` and ``Row``, its response models, are the stored ones
with those labels. A rank change is an event on a topic:
``shared.events.RankChange``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from shared.events import SourcePosition

__all__ = [
    "EXAMPLE_ROW",
    "HistoryPoint",
    "Row",
    "Standings",
    "StoredRow",
    "StoredStandings",
    "StyleCoefficient",
]

EXAMPLE_ROW: dict[str, Any] = {
    "model": "gemini-3-pro", "rank": 1, "rank_ub": 1, "score": 1492.3, "ci_low": 1486.1,
    "ci_high": 1498.4, "votes": 41230, "wins": 22011, "losses": 15012, "ties": 4207,
    "preliminary": False, "elo": 1488.0, "margin_votes": 412, "position": 1,
    "display_name": "Gemini 3 Pro", "organization": "Google", "country": "US",
    "license": "proprietary", "preview": False, "deprecated": False, "listed": True, "why": [],
}


class StoredRow(BaseModel):
    """One model's standing on a board, as the rating service writes it: these columns in this
    order (``elo`` and ``margin_votes`` only on vote boards without style control). Benchmark
    boards add the ``source`` and ``timestamp`` of the score (extra columns are kept)."""

    model_config = ConfigDict(extra="allow", json_schema_extra={"examples": [EXAMPLE_ROW]})

    model: str
    rank: int = Field(description="Rank on the whole board, by score.")
    rank_ub: int = Field(description="1 + number of models whose CI lies entirely above.")
    score: float = Field(description="Arena score (Bradley-Terry, 400/ln10 scale, 1000 anchor).")
    ci_low: float = Field(description="Lower end of the 95% CI.")
    ci_high: float = Field(description="Upper end of the 95% CI.")
    votes: int
    wins: int
    losses: int
    ties: int
    preliminary: bool = Field(description="Too few votes for a settled score: as the rating "
                              "service writes it, fewer than `PODIUM_RATING_PRELIMINARY_VOTES`; "
                              "as the api serves it, also the deployment's preliminary policy "
                              "(`PODIUM_API_PRELIMINARY_MIN_VOTES`, fresh votes since "
                              "`public_since`).")
    elo: float | None = Field(default=None, description="Online Elo (vote boards without "
                              "style control only).")
    margin_votes: int | None = Field(
        default=None, description="Vote boards without style control only: about how many "
        "votes would have to be removed for this model and the next one on the whole board to "
        "swap (a first-order influence approximation, refreshed with each fit); null on the "
        "last row, or where the two models' votes cannot close the gap.")


class Row(StoredRow):
    """One model's standing as the api serves it: the stored row with the registry facts of its
    model (null when the model is not registered) and its place among the rows the request's
    filters leave."""

    position: int | None = Field(default=None, description="1-based place among filtered rows.")
    display_name: str | None = None
    organization: str | None = None
    country: str | None = None
    license: str | None = None
    preview: bool | None = None
    deprecated: bool = Field(default=False, description="Retired in the registry: left out of "
                             "the default view (`include_deprecated=true`), kept in the fit.")
    listed: bool = Field(default=True, description="At or above the listing threshold "
                         "(`PODIUM_API_MIN_VOTES_TO_LIST`); unlisted rows are left out of the "
                         "default view (`include_unlisted=true`).")
    why: list[str] = Field(default_factory=list, description="Why the row is deprecated, "
                           "unlisted or preliminary (one reason each; empty when none), e.g. "
                           '"preliminary: 420 votes since public release, fewer than 1000".')


class StyleCoefficient(BaseModel):
    """The fitted effect of one style feature, with its 95% CI."""

    value: float
    ci_low: float
    ci_high: float


STYLE_EXAMPLE = {"tokens": {"value": 0.28, "ci_low": 0.25, "ci_high": 0.31},
                 "headers": {"value": 0.05, "ci_low": 0.02, "ci_high": 0.08},
                 "lists": {"value": 0.03, "ci_low": 0.0, "ci_high": 0.06},
                 "bold": {"value": 0.02, "ci_low": -0.01, "ci_high": 0.05}}


class StoredStandings(BaseModel):
    """A board's standings document, as the rating service writes it to Redis (the fields in
    this order; ``style_coefficients`` and ``battles`` only on style-controlled boards)."""

    board: str = Field(examples=["text/overall"])
    arena: str
    view: str
    updated_at: str = Field(examples=["2025-12-01T10:00:00+00:00"])
    models: int = Field(description="Models on the whole board.")
    votes: int
    converged: bool = Field(description="The fit converged.")
    connected: bool = Field(description="Every model is linked to every other by battles.")
    position: SourcePosition | None = Field(
        description="Where in Kafka the last batch counted on this board ended.")
    rows: Sequence[StoredRow] = Field(description="Ordered by score, best first.")
    style_coefficients: dict[str, StyleCoefficient] | None = Field(
        default=None,
        description="Style-controlled boards (`{view}+style`) only: the fitted effect of each "
        "style feature, in logits per standard deviation of its normalised difference "
        "`(a - b) / (a + b)`, with its 95% CI. Positive: voters prefer more of it.",
        examples=[STYLE_EXAMPLE],
    )
    battles: int | None = Field(default=None, description="Style-controlled boards only: the "
                                "battles the fit used.")

    def to_json(self) -> bytes:
        """The document as stored: the fields that were set (the optional ones only where
        they apply), in declaration order."""
        return self.__pydantic_serializer__.to_json(self, exclude_unset=True)


class Standings(StoredStandings):
    """A board's standings as the api serves them: the stored document, its rows labelled with
    registry facts and left by the request's filters."""

    rows: Sequence[Row] = Field(description="Ordered by score, best first, after filters.")
    release: dict[str, Any] | None = Field(
        default=None, description="With `?at=` only: the release served (its summary, "
        "shared/releases.py `ReleaseSummary`); the rows are as it published them.")


class HistoryPoint(BaseModel):
    """A model's standing on a board at one time (recorded at every rank change, and at most
    once per history interval otherwise)."""

    at: str = Field(examples=["2025-12-01T10:00:00+00:00"])
    score: float
    ci_low: float
    ci_high: float
    rank: int
    rank_ub: int
    votes: int
    rank_change: bool = Field(description="Recorded because the rank changed.")
    mle_exists: bool = Field(
        default=True, description="False when the fit had no finite score for the model: it "
        "had not yet both won (or tied) and lost (or tied) against the board's main body of "
        "models, so the maximum likelihood did not exist and the regularised fit put it "
        "thousands of points off. Charts leave such points out. (Absent from points recorded "
        "before this field: true.)")

    @classmethod
    def of(cls, row: StoredRow, at: str, changed: bool, mle_exists: bool = True
           ) -> HistoryPoint:
        return cls(at=at, score=row.score, ci_low=row.ci_low, ci_high=row.ci_high,
                   rank=row.rank, rank_ub=row.rank_ub, votes=row.votes, rank_change=changed,
                   mle_exists=mle_exists)
