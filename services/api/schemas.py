"""Response bodies of the api, with the examples OpenAPI shows."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Path, Query
from pydantic import BaseModel, ConfigDict, Field

from shared.events import ModelInfo

ArenaParam = Annotated[
    str, Path(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$", examples=["text"], description="Arena.")
]
ViewParam = Annotated[
    str,
    Path(
        pattern=r"^(overall|lang:[a-z0-9][a-z0-9_-]{0,63}|[a-z0-9][a-z0-9_-]{0,63})(\+style)?$",
        examples=["overall", "coding", "lang:zh", "overall+style"],
        description="`overall`, a category, `lang:{language}`, or a benchmark of arena `bench`; "
        "`{view}+style` is the style-controlled twin of a view.",
    ),
]
BOARD_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}/(lang:)?[a-z0-9][a-z0-9_-]{0,63}(\+style)?$"
BoardQuery = Annotated[
    str, Query(pattern=BOARD_PATTERN, examples=["text/overall"], description="`arena/view`.")
]

EXAMPLE_ROW: dict[str, Any] = {
    "rank": 1, "rank_ub": 1, "model": "gemini-3-pro", "score": 1492.3, "ci_low": 1486.1,
    "ci_high": 1498.4, "votes": 41230, "wins": 22011, "losses": 15012, "ties": 4207,
    "preliminary": False, "position": 1, "display_name": "Gemini 3 Pro",
    "organization": "Google", "country": "US", "license": "proprietary", "preview": False,
}


class BoardSummary(BaseModel):
    board: str = Field(examples=["text/overall"])
    arena: str
    view: str
    models: int
    votes: int
    updated_at: str


class BoardList(BaseModel):
    boards: list[BoardSummary]


class Row(BaseModel):
    """One model's standing. Extra columns the rating service adds (e.g. ``elo``) pass through."""

    model_config = ConfigDict(extra="allow", json_schema_extra={"examples": [EXAMPLE_ROW]})

    rank: int = Field(description="Rank on the whole board, by score.")
    rank_ub: int = Field(description="1 + number of models whose CI lies entirely above.")
    model: str
    score: float = Field(description="Arena score (Bradley-Terry, 400/ln10 scale, 1000 anchor).")
    ci_low: float = Field(description="Lower end of the 95% CI.")
    ci_high: float = Field(description="Upper end of the 95% CI.")
    votes: int
    wins: float
    losses: float
    ties: float
    preliminary: bool = Field(description="Too few votes for a settled score.")
    position: int | None = Field(default=None, description="1-based place among filtered rows.")
    display_name: str | None = None
    organization: str | None = None
    country: str | None = None
    license: str | None = None
    preview: bool | None = None


class StyleCoefficientOut(BaseModel):
    value: float
    ci_low: float
    ci_high: float


class Standings(BaseModel):
    board: str = Field(examples=["text/overall"])
    arena: str
    view: str
    updated_at: str
    models: int = Field(description="Models on the whole board.")
    votes: int
    rows: list[Row] = Field(description="Ordered by score, best first, after filters.")
    style_coefficients: dict[str, StyleCoefficientOut] | None = Field(
        default=None,
        description="Style-controlled boards (`{view}+style`) only: the fitted effect of each "
        "style feature, in logits per standard deviation of its normalised difference "
        "`(a - b) / (a + b)`, with its 95% CI. Positive: voters prefer more of it.",
        examples=[{"tokens": {"value": 0.28, "ci_low": 0.25, "ci_high": 0.31},
                   "headers": {"value": 0.05, "ci_low": 0.02, "ci_high": 0.08},
                   "lists": {"value": 0.03, "ci_low": 0.0, "ci_high": 0.06},
                   "bold": {"value": 0.02, "ci_low": -0.01, "ci_high": 0.05}}],
    )


class ModelBoardRow(Row):
    board: str = Field(examples=["text/overall"])


class ModelPage(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "id": "gemini-3-pro", "info": {"id": "gemini-3-pro", "display_name": "Gemini 3 Pro",
                                        "organization": "Google", "country": "US",
                                        "license": "proprietary", "preview": False,
                                        "release_date": "2025-11-18"},
        "boards": [{**EXAMPLE_ROW, "board": "text/overall"}]}]})

    id: str
    info: ModelInfo | None = Field(description="Registry entry (null if not registered).")
    boards: list[ModelBoardRow]


class HistoryPoint(BaseModel):
    at: str = Field(examples=["2025-12-01T10:00:00+00:00"])
    score: float
    ci_low: float
    ci_high: float
    rank: int
    rank_ub: int
    votes: int
    rank_change: bool = Field(description="Recorded because the rank changed.")


class History(BaseModel):
    model: str
    board: str
    points: list[HistoryPoint] = Field(description="Oldest first.")


class Matchups(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "board": "text/overall", "updated_at": "2025-12-01T10:00:00+00:00",
        "models": ["a", "b"], "win_rate": [[None, 0.61], [0.39, None]],
        "predicted": [[0.5, 0.6], [0.4, 0.5]], "battles": [[0, 120], [120, 0]],
        "wins": [[0, 70], [45, 0]]}]})

    board: str
    updated_at: str
    models: list[str] = Field(description="Row/column order: by rank, best first.")
    win_rate: list[list[float | None]] = Field(
        description="Observed (wins + ties/2) / battles of row vs column; null if never met."
    )
    predicted: list[list[float]] = Field(description="Bradley-Terry P(row beats column).")
    battles: list[list[int]]
    wins: list[list[int]] = Field(description="Battles the row model won against the column.")


class HeadToHead(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "board": "text/overall", "model_a": "a", "model_b": "b", "battles": 120,
        "wins_a": 70, "wins_b": 45, "ties": 5, "win_rate_a": 0.604, "predicted_a": 0.6,
        "score_a": 1300.0, "score_b": 1230.0, "rank_a": 1, "rank_b": 2}]})

    board: str
    model_a: str
    model_b: str
    battles: int
    wins_a: int
    wins_b: int
    ties: int
    win_rate_a: float | None = Field(description="Observed (wins_a + ties/2) / battles.")
    predicted_a: float = Field(description="Bradley-Terry P(a beats b).")
    score_a: float | None
    score_b: float | None
    rank_a: int | None
    rank_b: int | None


class Group(BaseModel):
    name: str = Field(examples=["CN"])
    best_rank: int
    best_model: str
    best_score: float
    models: int
    in_top: int = Field(description="How many of the board's top N this group holds.")


class Groups(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "board": "text/overall", "by": "country", "top": 10,
        "groups": [{"name": "CN", "best_rank": 3, "best_model": "qwen3.5-max-preview",
                    "best_score": 1461.0, "models": 9, "in_top": 5}],
        "headline": "CN models hold 5 of the top 10"}]})

    board: str
    by: str = Field(description="`organization` or `country`.")
    top: int
    groups: list[Group] = Field(description="Ordered by best rank.")
    headline: str
