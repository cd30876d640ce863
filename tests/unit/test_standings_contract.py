"""The standings contract (shared/standings.py): the worker's documents are made from it and the
api documents its board endpoint with it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from services.api.app import create_app
from services.rating.engine import FitOptions, fit_board, rank_margins
from services.rating.read_models import history_point
from services.rating.standings import standings_document
from shared.events import SourcePosition
from shared.settings import ApiSettings
from shared.standings import HistoryPoint, Row, Standings, StoredRow, StoredStandings
from tests.unit.engine.synthetic import counts_of, synthetic_battles

NOW = datetime(2025, 12, 1, 10, 0, tzinfo=UTC)
POSITION = SourcePosition(topic="podium.votes", partition=0, offset=41)
WRITTEN_ROW = ["model", "rank", "rank_ub", "score", "ci_low", "ci_high", "votes", "wins",
               "losses", "ties", "preliminary"]


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    openapi: dict[str, Any] = create_app(ApiSettings()).app.openapi()
    return openapi


def _schema_of(spec: dict[str, Any], path: str) -> dict[str, Any]:
    ok: dict[str, Any] = spec["paths"][path]["get"]["responses"]["200"]
    schema: dict[str, Any] = ok["content"]["application/json"]["schema"]
    return schema


def test_the_board_endpoint_is_documented_with_the_shared_model(spec: dict[str, Any]) -> None:
    assert _schema_of(spec, "/v1/leaderboards/{arena}/{view}") == {
        "$ref": "#/components/schemas/Standings"}
    components = spec["components"]["schemas"]
    shared = Standings.model_json_schema(ref_template="#/components/schemas/{model}")
    for name, schema in {"Standings": shared, **shared["$defs"]}.items():
        # FastAPI leaves out the defaults of optional fields in response schemas
        assert _without(components[name], "default") == _without(schema, "default", "$defs")
    assert set(components["Row"]["properties"]) == set(Row.model_fields)
    history = _schema_of(spec, "/v1/models/{model_id}/history")
    assert history == {"$ref": "#/components/schemas/History"}
    points = components["History"]["properties"]["points"]["items"]
    assert points == {"$ref": "#/components/schemas/HistoryPoint"}
    assert set(components["HistoryPoint"]["properties"]) == set(HistoryPoint.model_fields)


def _without(schema: Any, *keys: str) -> Any:
    if isinstance(schema, dict):
        return {k: _without(v, *keys) for k, v in schema.items() if k not in keys}
    if isinstance(schema, list):
        return [_without(v, *keys) for v in schema]
    return schema


def _fit() -> Any:
    return fit_board(counts_of(synthetic_battles(n_models=6, n_battles=400, seed=3)),
                     FitOptions())


def test_a_written_document_is_the_model_serialised_in_field_order() -> None:
    fit = _fit()
    elo = {m: 1000.0 + k for k, m in enumerate(fit.models)}
    raw = orjson.dumps(standings_document("text", "overall", fit, elo, NOW, POSITION))
    doc = orjson.loads(raw)
    assert list(doc) == ["board", "arena", "view", "updated_at", "models", "votes", "converged",
                         "connected", "position", "rows"]
    assert [list(row) for row in doc["rows"]] == [[*WRITTEN_ROW, "elo"]] * len(fit.models)
    assert doc["position"] == {"topic": "podium.votes", "partition": 0, "offset": 41}
    assert StoredStandings.model_validate_json(raw).to_json() == raw
    assert len(Standings.model_validate_json(raw).rows) == len(fit.models)


def test_a_board_without_elo_or_position_writes_neither_column() -> None:
    raw = orjson.dumps(standings_document("text", "overall+style", _fit(), None, NOW, None))
    doc = orjson.loads(raw)
    assert doc["position"] is None and "style_coefficients" not in doc
    assert all(list(row) == WRITTEN_ROW for row in doc["rows"])


def test_a_written_history_point_is_the_model_serialised() -> None:
    row = standings_document("text", "overall", _fit(), None, NOW, POSITION)["rows"][0]
    raw = orjson.dumps(history_point(row, NOW, True))
    assert HistoryPoint.model_validate_json(raw).model_dump_json().encode() == raw
    assert StoredRow.model_validate(row).model_dump(exclude_unset=True) == row


def test_a_document_with_margins_writes_them_last_in_each_row() -> None:
    """``margin_votes`` (engine.robustness) after ``elo``, in the model's order: the stored
    bytes are the model's; the last row's is null."""
    fit = _fit()
    counts = counts_of(synthetic_battles(n_models=6, n_battles=400, seed=3))
    elo = dict.fromkeys(fit.models, 1000.0)
    raw = orjson.dumps(standings_document("text", "overall", fit, elo, NOW, POSITION,
                                          rank_margins(counts, fit)))
    doc = orjson.loads(raw)
    assert [list(row) for row in doc["rows"]] == [[*WRITTEN_ROW, "elo", "margin_votes"]] * 6
    assert doc["rows"][-1]["margin_votes"] is None
    assert all(isinstance(row["margin_votes"], int) for row in doc["rows"][:-1])
    assert StoredStandings.model_validate_json(raw).to_json() == raw
