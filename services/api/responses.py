"""Response bodies of the api, with the examples OpenAPI shows. A board's standings and a
model's history points are the shared contract (``shared.standings``), served as the rating
service wrote them."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from shared.events import ModelInfo
from shared.standings import EXAMPLE_ROW, HistoryPoint, Row, Standings

__all__ = [
    "BoardList",
    "BoardSummary",
    "Groups",
    "HeadToHead",
    "History",
    "HistoryPoint",
    "Matchups",
    "ModelBoardRow",
    "ModelPage",
    "Standings",
]

class BoardSummary(BaseModel):
    board: str = Field(examples=["text/overall"])
    arena: str
    view: str
    models: int
    votes: int
    updated_at: str


class BoardList(BaseModel):
    boards: list[BoardSummary]


class ModelBoardRow(Row):
    """A model's row on one board (``GET /v1/models/{id}``)."""

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
