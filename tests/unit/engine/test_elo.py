from __future__ import annotations

import pytest

from services.rating.engine import EloState


@pytest.mark.parametrize(
    ("outcome", "rating_a", "rating_b"),
    [
        ("model_a", 1002.0, 998.0),
        ("model_b", 998.0, 1002.0),
        ("tie", 1000.0, 1000.0),
        ("tie_bothbad", 1000.0, 1000.0),
    ],
)
def test_first_vote(outcome: str, rating_a: float, rating_b: float) -> None:
    elo = EloState(k=4.0, scale=400.0, base=10.0, init=1000.0)
    elo.apply("a", "b", outcome)
    assert elo.ratings == {"a": pytest.approx(rating_a), "b": pytest.approx(rating_b)}


def test_sequence_matches_fastchat_formula() -> None:
    elo = EloState()
    elo.apply("a", "b", "model_a")  # a 1002, b 998
    elo.apply("b", "c", "tie")  # b is 2 points below c
    e_b = 1.0 / (1.0 + 10.0 ** ((1000.0 - 998.0) / 400.0))
    assert elo.ratings["b"] == pytest.approx(998.0 + 4.0 * (0.5 - e_b))
    assert elo.ratings["c"] == pytest.approx(1000.0 + 4.0 * (0.5 - (1.0 - e_b)))
    assert sum(elo.ratings.values()) == pytest.approx(3000.0)


def test_order_matters_for_elo() -> None:
    first, second = EloState(), EloState()
    for a, b, o in [("a", "b", "model_a"), ("b", "c", "model_a")]:
        first.apply(a, b, o)
    for a, b, o in [("b", "c", "model_a"), ("a", "b", "model_a")]:
        second.apply(a, b, o)
    assert first.ratings != second.ratings


@pytest.mark.parametrize(("a", "b", "outcome"), [("a", "b", "draw"), ("a", "a", "tie")])
def test_invalid_votes(a: str, b: str, outcome: str) -> None:
    elo = EloState()
    with pytest.raises(ValueError):
        elo.apply(a, b, outcome)
    assert elo.ratings == {}
