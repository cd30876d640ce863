from __future__ import annotations

from typing import Any

import orjson
import pytest
from pydantic import ValidationError

from shared.events import (
    RankChange,
    ScoreEvent,
    SourcePosition,
    Vote,
    decode_vote_record,
    encode_vote_record,
    utc_now,
)

GOOD: dict[str, Any] = {
    "vote_id": "v-1",
    "arena": "text",
    "model_a": "qwen3.5-max-preview",
    "model_b": "gpt-5.1-high",
    "winner": "model_a",
}


def test_minimal_vote_gets_defaults() -> None:
    vote = Vote.model_validate(GOOD)
    assert vote.categories == [] and vote.language is None
    assert vote.turns == 1 and vote.anonymous is True and vote.received_at is None


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"winner": "model_c"}, "winner"),
        ({"model_b": "qwen3.5-max-preview"}, None),  # same model on both sides
        ({"model_a": "bad|id"}, "model_a"),
        ({"model_a": ""}, "model_a"),
        ({"arena": "Text"}, "arena"),
        ({"turns": 0}, "turns"),
        ({"turns": "many"}, "turns"),
        ({"categories": ["overall"]}, "categories"),
        ({"categories": ["coding", "lang:en"]}, "categories"),
        ({"categories": ["overall+style"]}, "categories"),
        ({"vote_id": ""}, "vote_id"),
        ({"unexpected": 1}, "unexpected"),
        ({"style": {"model_a": {"tokens": -1}, "model_b": {"tokens": 3}}}, "style"),
    ],
)
def test_invalid_votes_are_rejected_with_the_field(
    change: dict[str, Any], field: str | None
) -> None:
    with pytest.raises(ValidationError) as info:
        Vote.model_validate({**GOOD, **change})
    if field is not None:
        assert any(err["loc"] and err["loc"][0] == field for err in info.value.errors())


@pytest.mark.parametrize("missing", ["vote_id", "arena", "model_a", "model_b", "winner"])
def test_required_fields(missing: str) -> None:
    data = {k: v for k, v in GOOD.items() if k != missing}
    with pytest.raises(ValidationError) as info:
        Vote.model_validate(data)
    assert info.value.errors()[0]["loc"] == (missing,)


@pytest.mark.parametrize(
    ("categories", "language", "views"),
    [
        ([], None, ["overall"]),
        (["coding"], None, ["overall", "coding"]),
        (["coding", "math"], "zh", ["overall", "coding", "math", "lang:zh"]),
    ],
)
def test_views_of_a_vote(categories: list[str], language: str | None, views: list[str]) -> None:
    vote = Vote.model_validate({**GOOD, "categories": categories, "language": language})
    assert vote.views() == views


def test_a_repeated_category_counts_once_in_order_of_first_appearance() -> None:
    vote = Vote.model_validate({**GOOD, "categories": ["math", "coding", "math", "coding"]})
    assert vote.categories == ["math", "coding"]
    assert vote.views() == ["overall", "math", "coding"]


@pytest.mark.parametrize("reserved", ["overall", "overall+style", "coding+style", "lang:zh"])
def test_a_reserved_view_name_is_refused_naming_it(reserved: str) -> None:
    with pytest.raises(ValidationError) as info:
        Vote.model_validate_json(orjson.dumps({**GOOD, "categories": ["coding", reserved]}))
    [error] = info.value.errors()
    assert error["type"] == "reserved_category" and error["loc"] == ("categories",)
    assert f"'{reserved}' is reserved" in error["msg"]


def test_a_recorded_vote_with_reserved_or_repeated_categories_counts_once_per_board() -> None:
    """Records already in Kafka, written before the rules: read, not dead-lettered."""
    raw = orjson.dumps([{**GOOD, "categories": ["overall", "coding", "coding"]}])
    [vote] = decode_vote_record(raw)
    assert vote.views() == ["overall", "coding"]


@pytest.mark.parametrize(
    "change",
    [{"turns": True}, {"turns": "2"}, {"turns": 2.0}, {"anonymous": "yes"}, {"anonymous": 1},
     {"style": {"model_a": {"tokens": "10"}, "model_b": {"tokens": 3}}},
     {"style": {"model_a": {"tokens": 10, "bold": False}, "model_b": {"tokens": 3}}}],
)
def test_numbers_and_flags_have_their_json_type_on_the_wire(change: dict[str, Any]) -> None:
    raw = orjson.dumps({**GOOD, **change})
    with pytest.raises(ValidationError):
        Vote.model_validate_json(raw)
    assert len(decode_vote_record(raw)) == 1  # a record already in the topic still decodes


def test_score_events_take_a_number_and_an_iso_timestamp() -> None:
    good = {"model": "m", "benchmark": "mmlu", "score": 1, "source": "x",
            "timestamp": "2026-01-02T03:04:05Z"}
    assert ScoreEvent.model_validate_json(orjson.dumps(good)).score == 1.0
    for bad in ("1.5", True):
        with pytest.raises(ValidationError):
            ScoreEvent.model_validate_json(orjson.dumps({**good, "score": bad}))


def test_vote_timestamps_parse_from_iso_strings() -> None:
    raw = orjson.dumps({**GOOD, "received_at": "2026-01-02T03:04:05+00:00"})
    assert Vote.model_validate_json(raw).received_at is not None


def test_vote_round_trips_through_json() -> None:
    vote = Vote.model_validate(
        {
            **GOOD,
            "categories": ["coding"],
            "language": "en",
            "received_at": utc_now(),
            "style": {"model_a": {"tokens": 120, "bold": 2}, "model_b": {"tokens": 80}},
        }
    )
    assert Vote.model_validate_json(vote.model_dump_json()) == vote


def test_score_event_rejects_nan() -> None:
    with pytest.raises(ValidationError):
        ScoreEvent(model="m", benchmark="mmlu", score=float("nan"), source="x")


def test_rank_change_round_trip() -> None:
    change = RankChange(
        board="text/overall",
        model="m",
        old_rank=3,
        new_rank=1,
        old_score=1450.0,
        new_score=1464.0,
        rank_ub=1,
        votes=1000,
        timestamp=utc_now(),
        position=SourcePosition(topic="podium.votes", partition=0, offset=42),
    )
    assert RankChange.model_validate_json(change.model_dump_json()) == change


def test_vote_records_hold_one_vote_or_a_batch_in_order() -> None:
    votes = [Vote.model_validate({**GOOD, "vote_id": f"v{i}"}) for i in range(3)]
    assert decode_vote_record(encode_vote_record(votes)) == votes
    assert decode_vote_record(votes[0].model_dump_json().encode()) == votes[:1]
    with pytest.raises(ValidationError):
        decode_vote_record(b'[{"vote_id": "x"}]')


def test_ingest_stamps_the_server_set_fields_over_whatever_the_client_sent() -> None:
    from datetime import UTC, datetime

    from shared.events import Vote, encode_vote_record, stamp_received

    vote = Vote.model_validate({"vote_id": "v1", "arena": "text", "model_a": "a",
                                "model_b": "b", "winner": "tie", "released": True,
                                "excluded": "quarantined",
                                "received_at": "2020-01-01T00:00:00Z"})
    now = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
    stamp_received([vote], now)
    assert (vote.received_at, vote.released, vote.excluded) == (now, False, None)
    again = decode_vote_record(encode_vote_record([vote]))[0]
    assert again == vote and again.received_at == now


def test_a_null_in_a_model_update_clears_or_restores_the_default() -> None:
    """PATCH /v1/admin/models/{id} with an explicit null (found by the OpenAPI fuzz test: a null
    preview flag was a 500): optional fields are cleared, the others go back to their default."""
    from shared.events import ModelFields, ModelInfo

    info = ModelInfo.register("m1", ModelFields(display_name="M one", organization="Org",
                                                preview=True))
    cleared = info.updated(ModelFields.model_validate(
        {"preview": None, "display_name": None, "organization": None}))
    assert (cleared.preview, cleared.display_name, cleared.organization) == (False, "m1", None)
    kept = info.updated(ModelFields.model_validate({"country": "FR"}))
    assert (kept.preview, kept.display_name, kept.country) == (True, "M one", "FR")
