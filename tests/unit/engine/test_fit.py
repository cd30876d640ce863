from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest

from services.rating.engine import BoardFit, FitOptions, PairCounts, fit_board, rank_upper_bound
from tests.unit.engine.synthetic import counts_of, rows_of, synthetic_battles

ROW_KEYS = {
    "model", "rank", "rank_ub", "score", "ci_low", "ci_high",
    "votes", "wins", "losses", "ties", "preliminary",
}  # fmt: skip


def _assert_finite(fit: BoardFit) -> None:
    for name in ("theta", "scores", "ci_low", "ci_high", "std_err"):
        values = getattr(fit, name)
        assert values.shape == (len(fit.models),)
        assert np.all(np.isfinite(values)), name
    assert np.all(fit.ci_low <= fit.scores) and np.all(fit.scores <= fit.ci_high)
    json.dumps(rows_of(fit))


def test_wikipedia_worked_example() -> None:
    """en.wikipedia.org/wiki/Bradley-Terry_model, also arena-rank's own first test."""
    counts = PairCounts.from_triples(
        {
            ("A", "B", "model_a"): 2,
            ("B", "A", "model_a"): 3,
            ("A", "D", "model_a"): 1,
            ("D", "A", "model_a"): 4,
            ("B", "C", "model_a"): 5,
            ("C", "B", "model_a"): 3,
            ("C", "D", "model_a"): 1,
            ("D", "C", "model_a"): 3,
        }
    )
    fit = fit_board(counts, FitOptions(scale=math.e, base=math.e, init_rating=0.0))
    power = np.exp(fit.scores / math.e)
    np.testing.assert_allclose(power, [0.640, 1.043, 0.660, 2.270], rtol=1e-3)
    assert fit.converged and fit.connected and fit.mle_exists


def test_scores_are_centred_on_init_rating() -> None:
    fit = fit_board(counts_of(synthetic_battles(seed=3)))
    assert fit.theta.mean() == pytest.approx(0.0, abs=1e-12)
    assert fit.scores.mean() == pytest.approx(1000.0, abs=1e-9)
    np.testing.assert_allclose(fit.scores, 400.0 * fit.theta / math.log(10.0) + 1000.0)


def test_ties_count_half_a_win_for_each_side() -> None:
    tied = PairCounts.from_triples({("a", "b", "tie"): 10, ("b", "a", "tie_bothbad"): 10})
    np.testing.assert_allclose(fit_board(tied).scores, [1000.0, 1000.0], atol=1e-9)
    uneven = PairCounts.from_triples(
        {("a", "b", "model_a"): 3, ("a", "b", "model_b"): 1, ("a", "b", "tie"): 2}
    )
    fit = fit_board(uneven)
    # a scores 4 of 6 points: p = 2/3, so the gap is 400 log10(2)
    assert fit.scores[0] - fit.scores[1] == pytest.approx(400 * math.log10(2.0), abs=1e-4)


@pytest.mark.parametrize(
    ("anchor", "present"), [("model-004", True), ("absent-model", False), (None, False)]
)
def test_anchor_model(anchor: str | None, present: bool) -> None:
    counts = counts_of(synthetic_battles(seed=4))
    plain = fit_board(counts)
    fit = fit_board(counts, FitOptions(anchor_model=anchor, anchor_score=1200.0))
    shift = fit.scores - plain.scores
    np.testing.assert_allclose(shift, shift[0])
    np.testing.assert_allclose(fit.ci_high - fit.ci_low, plain.ci_high - plain.ci_low)
    if present:
        assert fit.scores[counts.index("model-004")] == pytest.approx(1200.0, abs=1e-9)
    else:
        np.testing.assert_allclose(shift, 0.0, atol=1e-9)


@pytest.mark.parametrize(
    ("ci_low", "ci_high", "expected"),
    [
        ([], [], []),
        ([10.0], [20.0], [1]),
        ([10.0, 0.0, -5.0], [20.0, 9.0, 10.0], [1, 2, 1]),
        ([10.0, 10.0], [12.0, 12.0], [1, 1]),  # equal bounds do not exclude
        ([30.0, 20.0, 0.0], [40.0, 25.0, 5.0], [1, 2, 3]),
    ],
)
def test_rank_upper_bound(ci_low: list[float], ci_high: list[float], expected: list[int]) -> None:
    result = rank_upper_bound(np.array(ci_low), np.array(ci_high))
    assert result.tolist() == expected


def test_rank_and_rows() -> None:
    counts = counts_of(synthetic_battles(n_models=8, n_battles=1500, seed=5))
    fit = fit_board(counts, FitOptions(preliminary_votes=380))
    rows = rows_of(fit)
    assert [set(row) for row in rows] == [ROW_KEYS] * 8
    assert [row["rank"] for row in rows] == list(range(1, 9))
    assert [row["score"] for row in rows] == sorted(fit.scores.tolist(), reverse=True)
    assert all(row["rank_ub"] <= row["rank"] for row in rows)
    for row in rows:
        k = fit.models.index(row["model"])
        assert row["votes"] == row["wins"] + row["losses"] + row["ties"] == fit.votes[k]
        assert row["preliminary"] == (row["votes"] < 380)
        assert type(row["score"]) is float and type(row["rank"]) is int
        assert type(row["preliminary"]) is bool
    assert sum(row["votes"] for row in rows) == 2 * counts.total


def _board(triples: dict[tuple[str, str, str], int], models: tuple[str, ...] = ()) -> PairCounts:
    return PairCounts.from_triples(triples, models=models)


DEGENERATE: list[tuple[str, PairCounts, dict[str, Any]]] = [
    ("empty", _board({}), {"connected": True, "mle_exists": True}),
    ("one model", _board({}, ("solo",)), {"connected": True, "mle_exists": True}),
    ("two models no votes", _board({}, ("a", "b")), {"connected": False, "mle_exists": False}),
    ("never lost", _board({("a", "b", "model_a"): 7}), {"connected": True, "mle_exists": False}),
    (
        "never won",
        _board({("a", "b", "model_b"): 3, ("b", "c", "tie"): 4, ("c", "b", "model_a"): 2}),
        {"connected": True, "mle_exists": False},
    ),
    (
        "disconnected",
        _board({("a", "b", "model_a"): 3, ("b", "a", "model_a"): 2, ("c", "d", "tie"): 5}),
        {"connected": False, "mle_exists": False},
    ),
    (
        "model without votes",
        _board({("a", "b", "model_a"): 3, ("b", "a", "model_a"): 2}, ("new",)),
        {"connected": False, "mle_exists": False},
    ),
    ("only ties", _board({("a", "b", "tie"): 3}), {"connected": True, "mle_exists": True}),
]


@pytest.mark.parametrize(
    ("counts", "flags"), [d[1:] for d in DEGENERATE], ids=[d[0] for d in DEGENERATE]
)
@pytest.mark.parametrize("reweighted", [False, True])
def test_degenerate_boards_are_finite_and_flagged(
    counts: PairCounts, flags: dict[str, bool], reweighted: bool
) -> None:
    fit = fit_board(counts, FitOptions(reweighted=reweighted))
    _assert_finite(fit)
    assert fit.models == counts.models
    assert fit.converged
    for name, value in flags.items():
        assert getattr(fit, name) is value, name
    assert len(rows_of(fit)) == len(counts.models)


def test_unbeaten_model_is_on_top_but_finite() -> None:
    counts = _board(
        {("a", "b", "model_a"): 50, ("b", "c", "model_a"): 20, ("c", "b", "model_a"): 20}
    )
    fit = fit_board(counts)
    assert rows_of(fit)[0]["model"] == "a"
    assert 1000.0 < fit.scores[0] < 10_000.0


def test_warm_start_gives_the_same_fit_in_fewer_iterations() -> None:
    battles = synthetic_battles(n_models=30, n_battles=6000, seed=6)
    before = fit_board(counts_of(battles[:-100]))
    counts = counts_of(battles)
    cold = fit_board(counts)
    warm = fit_board(counts, warm_start=before)
    assert warm.converged and cold.converged
    assert warm.iterations < cold.iterations
    np.testing.assert_allclose(warm.scores, cold.scores, atol=1e-4)
    np.testing.assert_allclose(warm.ci_low, cold.ci_low, atol=1e-4)


def test_warm_start_matches_models_by_id() -> None:
    battles = synthetic_battles(n_models=10, n_battles=2000, seed=8)
    old = fit_board(counts_of([b for b in battles if "model-009" not in b[:2]]))
    counts = counts_of(battles)
    counts.add("zz-new", "model-000", "model_a", 5)
    warm = fit_board(counts, warm_start=old)
    np.testing.assert_allclose(warm.scores, fit_board(counts).scores, atol=1e-4)


def test_max_iter_exhausted_is_reported() -> None:
    fit = fit_board(counts_of(synthetic_battles(seed=9)), FitOptions(max_iter=1))
    assert not fit.converged and fit.iterations == 1
    _assert_finite(fit)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"ci_level": 1.0},
        {"ci_level": 0.0},
        {"base": 1.0},
        {"scale": -400.0},
        {"min_pair_count": 0},
        {"max_iter": 0},
        {"tol": 0.0},
        {"l2": 0.0},
        {"hessian_reg": -1.0},
        {"anchor_score": math.nan},
    ],
)
def test_invalid_options(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        FitOptions(**kwargs)


def test_ci_level_widens_intervals() -> None:
    counts = counts_of(synthetic_battles(seed=10))
    narrow = fit_board(counts, FitOptions(ci_level=0.5))
    wide = fit_board(counts, FitOptions(ci_level=0.99))
    assert np.all(wide.ci_high - wide.ci_low > narrow.ci_high - narrow.ci_low)
