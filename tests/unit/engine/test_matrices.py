from __future__ import annotations

import math

import numpy as np
import pytest

from services.rating.engine import PairCounts, fit_board, predicted_win_matrix, win_rate_matrix
from tests.unit.engine.synthetic import counts_of, synthetic_battles


def test_win_rate_matrix() -> None:
    counts = PairCounts.from_triples(
        {("a", "b", "model_a"): 3, ("b", "a", "model_a"): 1, ("a", "b", "tie_bothbad"): 2},
        models=("c",),
    )
    rate = win_rate_matrix(counts)
    assert rate[0, 1] == pytest.approx(4.0 / 6.0)
    assert rate[1, 0] == pytest.approx(2.0 / 6.0)
    assert np.isnan(rate[0, 2]) and np.isnan(rate[2, 2]) and np.isnan(rate[0, 0])


def test_win_rate_matrix_empty() -> None:
    assert win_rate_matrix(PairCounts()).shape == (0, 0)


def test_predicted_win_matrix() -> None:
    counts = counts_of(synthetic_battles(n_models=6, n_battles=2000, seed=2))
    fit = fit_board(counts)
    prob = predicted_win_matrix(fit)
    np.testing.assert_allclose(prob + prob.T, 1.0)
    np.testing.assert_allclose(np.diag(prob), 0.5)
    gap = fit.scores[0] - fit.scores[1]
    assert prob[0, 1] == pytest.approx(1.0 / (1.0 + 10.0 ** (-gap / 400.0)))
    expected = 1.0 / (1.0 + np.exp(-(fit.theta[:, None] - fit.theta[None, :])))
    np.testing.assert_allclose(prob, expected)
    observed = win_rate_matrix(counts)
    played = ~np.isnan(observed)
    assert np.max(np.abs(observed[played] - prob[played])) < 0.15
    assert math.isfinite(float(prob.sum()))
