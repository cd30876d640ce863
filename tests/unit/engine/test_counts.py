from __future__ import annotations

import numpy as np
import pytest

from services.rating.engine import PairCounts
from tests.unit.engine.synthetic import counts_of, synthetic_battles, triples_of

TRIPLES = {
    ("b", "a", "model_a"): 3,
    ("a", "b", "model_a"): 2,
    ("a", "b", "tie"): 1,
    ("b", "a", "tie_bothbad"): 4,
    ("c", "a", "model_b"): 5,
}


def test_from_triples_sorts_models_and_round_trips() -> None:
    counts = PairCounts.from_triples(TRIPLES)
    assert counts.models == ("a", "b", "c")
    assert counts.triples() == TRIPLES
    assert counts.total == 15
    assert len(counts) == 3


def test_zero_counts_are_ignored_and_extra_models_kept() -> None:
    counts = PairCounts.from_triples({("x", "y", "tie"): 0, ("a", "b", "model_b"): 1}, models=["z"])
    assert counts.models == ("a", "b", "z")
    assert counts.triples() == {("a", "b", "model_b"): 1}


def test_derived_matrices() -> None:
    counts = PairCounts.from_triples(TRIPLES)
    a, b, c = (counts.index(m) for m in "abc")
    wins, ties, battles = counts.wins(), counts.ties(), counts.battles()
    assert (wins[a, b], wins[b, a], wins[a, c], wins[c, a]) == (2, 3, 5, 0)
    assert ties[a, b] == ties[b, a] == 5
    assert battles[a, b] == battles[b, a] == 10
    assert battles[a, c] == 5 and battles[b, c] == 0
    np.testing.assert_array_equal(battles, wins + wins.T + ties)


@pytest.mark.parametrize(
    ("triples", "message"),
    [
        ({("a", "b", "win"): 1}, "unknown outcome"),
        ({("a", "b", "model_a"): -1}, "negative"),
        ({("a", "a", "tie"): 2}, "itself"),
    ],
)
def test_from_triples_rejects_invalid_input(
    triples: dict[tuple[str, str, str], int], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        PairCounts.from_triples(triples)


@pytest.mark.parametrize(
    ("model_a", "model_b", "outcome", "n", "message"),
    [
        ("a", "b", "draw", 1, "unknown outcome"),
        ("a", "a", "tie", 1, "itself"),
        ("a", "b", "model_a", -1, "non-negative"),
    ],
)
def test_add_rejects_invalid_votes(
    model_a: str, model_b: str, outcome: str, n: int, message: str
) -> None:
    counts = PairCounts.from_triples({("b", "a", "tie"): 1})
    with pytest.raises(ValueError, match=message):
        counts.add(model_a, model_b, outcome, n)
    assert counts.triples() == {("b", "a", "tie"): 1}


def test_add_matches_from_triples_including_new_models() -> None:
    battles = synthetic_battles(n_models=6, n_battles=300, seed=1)
    counts = PairCounts()
    for battle in battles:
        counts.add(*battle)
    assert counts == counts_of(battles)
    assert counts.triples() == triples_of(battles)


def test_cells_view_is_read_only_and_copy_is_independent() -> None:
    counts = PairCounts.from_triples(TRIPLES)
    with pytest.raises(ValueError):
        counts.cells[0, 0, 1] = 9
    clone = counts.copy()
    clone.add("a", "b", "model_a")
    assert clone != counts
    assert counts.triples() == TRIPLES


@pytest.mark.parametrize(
    ("models", "shape"),
    [(("b", "a"), (4, 2, 2)), (("a", "b"), (4, 3, 3))],
)
def test_constructor_validates_cells(models: tuple[str, ...], shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError):
        PairCounts(models, np.zeros(shape, dtype=np.int64))


def test_empty_counts() -> None:
    counts = PairCounts.from_triples({})
    assert counts.models == ()
    assert counts.total == 0
    assert counts.triples() == {}
    assert counts.battles().shape == (0, 0)


def test_add_many_matches_add_one_by_one() -> None:
    rng = np.random.default_rng(4)
    names = [f"m{i}" for i in range(9)]
    outcomes = ["model_a", "model_b", "tie", "tie_bothbad"]
    one_by_one, at_once = PairCounts(names[:3]), PairCounts(names[:3])
    for _ in range(30):  # batches bring new models now and then
        increments: dict[tuple[str, str, str], int] = {}
        for _ in range(int(rng.integers(0, 20))):
            a, b = rng.choice(names[: int(rng.integers(3, 10))], 2, replace=False)
            increments[(str(a), str(b), outcomes[int(rng.integers(4))])] = int(rng.integers(1, 5))
        for (a, b, outcome), n in increments.items():
            one_by_one.add(a, b, outcome, n)
        at_once.add_many(increments)
        assert at_once == one_by_one
        assert at_once.models == one_by_one.models


@pytest.mark.parametrize(
    ("triple", "n", "message"),
    [(("a", "b", "draw"), 1, "unknown outcome"), (("a", "a", "tie"), 1, "itself"),
     (("a", "b", "model_a"), -1, "non-negative")],
)
def test_add_many_refuses_what_add_refuses_and_adds_nothing(
    triple: tuple[str, str, str], n: int, message: str
) -> None:
    counts = PairCounts.from_triples({("b", "a", "tie"): 1})
    with pytest.raises(ValueError, match=message):
        counts.add_many({("a", "b", "tie"): 2, triple: n})
    assert counts.triples() == {("b", "a", "tie"): 1}
