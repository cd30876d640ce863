"""Which models have a score the votes fix (the rest: from the ridge, thousands of points off)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.rating.engine import PairCounts, fit_board, models_with_a_score
from tests.unit.engine.synthetic import Battle, counts_of

CYCLE: list[Battle] = [("a", "b", "model_a"), ("b", "c", "model_a"), ("c", "a", "model_a")]


@pytest.mark.parametrize(("battles", "scored"), [
    pytest.param(CYCLE, {"a", "b", "c"}, id="a cycle: the MLE exists"),
    pytest.param([*CYCLE, ("new", "a", "model_a")], {"a", "b", "c"},
                 id="a newcomer that only won"),
    pytest.param([*CYCLE, ("c", "new", "model_a")], {"a", "b", "c"},
                 id="a newcomer that only lost"),
    pytest.param([*CYCLE, ("new", "a", "tie")], {"a", "b", "c", "new"},
                 id="a newcomer that only tied: half a win each way"),
    pytest.param([*CYCLE, ("new", "a", "model_a"), ("new", "b", "model_a")], {"a", "b", "c"},
                 id="a newcomer that beat two"),
    pytest.param([("a", "b", "model_a")] * 30, set(), id="two models, one always wins"),
    pytest.param([("a", "b", "model_a"), ("b", "a", "model_a"), ("c", "d", "model_a"),
                  ("d", "c", "model_a")], set(), id="two equal groups: neither is the board"),
])
def test_models_with_a_score(battles: list[Battle], scored: set[str]) -> None:
    counts = counts_of(battles)
    flags = models_with_a_score(counts).tolist()
    assert {m for m, s in zip(counts.models, flags, strict=True) if s} == scored


def test_a_board_of_one_or_none() -> None:
    assert models_with_a_score(PairCounts()).tolist() == []
    assert models_with_a_score(PairCounts(["solo"])).tolist() == [True]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("abcd"), st.sampled_from("abcd"),
                          st.sampled_from(["model_a", "model_b", "tie"])), min_size=1))
def test_every_model_has_a_score_exactly_when_the_mle_exists(battles: list[Battle]) -> None:
    battles = [b for b in battles if b[0] != b[1]] or [("a", "b", "tie")]
    counts = counts_of(battles)
    assert bool(models_with_a_score(counts).all()) == fit_board(counts).mle_exists
