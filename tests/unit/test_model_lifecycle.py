"""Model lifecycle in the registry and the publishing rules of the api's rows (pure logic; the
same against real Kafka and Redis: tests/e2e/test_model_lifecycle.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from services.api.rows import ListingPolicy, RowFilter, labelled
from shared.events import ModelFields, ModelInfo

NOW = datetime(2025, 12, 1, 10, 0, tzinfo=UTC)
BOARD = "text/overall"


def row(model: str, votes: int, preliminary: bool = False) -> dict[str, Any]:
    return {"model": model, "rank": 1, "rank_ub": 1, "score": 1000.0, "votes": votes,
            "preliminary": preliminary}


def test_deprecation_is_stamped_and_cleared() -> None:
    info = ModelInfo(id="m").updated(ModelFields(deprecated=True)).lifecycle(NOW, None)
    assert info.deprecated and info.deprecated_at == NOW
    later = info.lifecycle(datetime(2026, 1, 1, tzinfo=UTC), None)
    assert later.deprecated_at == NOW, "the first deprecation's time stays"
    back = info.updated(ModelFields(deprecated=False)).lifecycle(NOW, None)
    assert not back.deprecated and back.deprecated_at is None
    cleared = info.updated(ModelFields.model_validate({"deprecated": None}))
    assert cleared.deprecated is False


@pytest.mark.parametrize("fields", [
    {"release_date": "2025-13-45"},
    {"public_since": "yesterday"},
    {"public_since": "2025-12-01T10:00:00"},  # no time zone: ambiguous
    {"deprecated": "yes"},
])
def test_bad_lifecycle_fields_are_refused(fields: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        ModelFields.model_validate(fields)


def test_public_since_keeps_its_baseline_until_cleared() -> None:
    fields = ModelFields(public_since=NOW)
    info = ModelInfo(id="m").updated(fields).lifecycle(NOW, {BOARD: 700})
    assert info.public_votes == {BOARD: 700}
    assert info.updated(ModelFields(organization="Acme")).lifecycle(NOW, None).public_votes
    gone = info.updated(ModelFields.model_validate({"public_since": None})).lifecycle(NOW, None)
    assert gone.public_since is None and gone.public_votes is None


def test_policy_verdicts_and_reasons() -> None:
    registry = {
        "old": ModelInfo(id="old", deprecated=True, deprecated_at=NOW),
        "fresh": ModelInfo(id="fresh", public_since=NOW, public_votes={BOARD: 900}),
        "settled": ModelInfo(id="settled", public_since=NOW, public_votes={BOARD: 100}),
    }
    policy = ListingPolicy(min_votes_to_list=200, preliminary_min_votes=500,
                           preliminary_min_fresh_votes=300)
    rows = labelled([row("old", 2000), row("fresh", 1000), row("settled", 1000),
                     row("small", 150), row("mid", 400), row("early", 250, preliminary=True)],
                    registry, BOARD, policy)
    by = {r["model"]: r for r in rows}
    assert by["old"]["deprecated"] and by["old"]["listed"] and not by["old"]["preliminary"]
    assert by["old"]["why"][0].startswith("deprecated since 2025-12-01T10:00:00")
    assert by["fresh"]["preliminary"]
    assert by["fresh"]["why"] == [
        "preliminary: 100 votes since public release, fewer than 300"]
    assert not by["settled"]["preliminary"] and by["settled"]["why"] == []
    assert not by["small"]["listed"] and by["small"]["preliminary"]
    assert by["small"]["why"] == ["unlisted: 150 votes, fewer than the 200 needed to be listed",
                                  "preliminary: 150 votes, fewer than 500"]
    assert by["mid"]["preliminary"] and by["mid"]["listed"]
    assert by["early"]["why"] == ["preliminary: 250 votes, too few for a settled score"]
    assert [r["model"] for r in RowFilter().apply(rows)] == ["fresh", "settled", "mid", "early"]
    assert [r["model"] for r in RowFilter(include_deprecated=True).apply(rows)] == [
        "old", "fresh", "settled", "mid", "early"]
    everything = RowFilter(include_deprecated=True, include_unlisted=True).apply(rows)
    assert [r["position"] for r in everything] == [1, 2, 3, 4, 5, 6]


def test_the_default_policy_changes_nothing() -> None:
    rows = labelled([row("a", 1), row("b", 0, preliminary=True)], {}, BOARD)
    assert [(r["listed"], r["deprecated"], r["preliminary"]) for r in rows] == [
        (True, False, False), (True, False, True)]
    assert len(RowFilter().apply(rows)) == 2


def test_benchmark_rows_are_not_held_to_vote_thresholds() -> None:
    """A benchmark row is one score (votes = 1): listing and preliminary thresholds would hide
    every benchmark board; deprecation still applies."""
    policy = ListingPolicy(min_votes_to_list=1000, preliminary_min_votes=1000)
    registry = {"old": ModelInfo(id="old", deprecated=True)}
    rows = labelled([row("new", 1), row("old", 1)], registry, "bench/gpqa", policy)
    assert [(r["listed"], r["preliminary"], r["deprecated"]) for r in rows] == [
        (True, False, False), (True, False, True)]
    assert [r["model"] for r in RowFilter().apply(rows)] == ["new"]
