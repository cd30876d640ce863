from __future__ import annotations

import numpy as np
import pytest

from services.rating.engine import (
    FitOptions,
    PairCounts,
    bootstrap_ci,
    bootstrap_ci_from_resamples,
    fit_board,
    resample_counts,
)
from tests.unit.engine.synthetic import counts_of, synthetic_battles

COUNTS = counts_of(synthetic_battles(n_models=8, n_battles=3000, seed=11))


def test_resamples_keep_total_models_and_support() -> None:
    samples = list(resample_counts(COUNTS, rounds=5, seed=1))
    assert len(samples) == 5
    for sample in samples:
        assert sample.models == COUNTS.models
        assert sample.total == COUNTS.total
        assert not np.any((sample.cells > 0) & (COUNTS.cells == 0))
    assert samples[0] != samples[1]


def test_bootstrap_is_deterministic_per_seed() -> None:
    options = FitOptions()
    first = bootstrap_ci(COUNTS, options, rounds=10, seed=5)
    again = bootstrap_ci(COUNTS, options, rounds=10, seed=5)
    other = bootstrap_ci(COUNTS, options, rounds=10, seed=6)
    np.testing.assert_array_equal(first[0], again[0])
    assert not np.array_equal(first[0], other[0])


@pytest.mark.parametrize("reweighted", [False, True])
def test_bootstrap_agrees_with_sandwich(reweighted: bool) -> None:
    options = FitOptions(reweighted=reweighted, min_pair_count=20)
    fit = fit_board(COUNTS, options)
    low, high = bootstrap_ci(COUNTS, options, rounds=200, seed=0)
    assert np.all(low <= fit.scores + 1e-9) and np.all(fit.scores <= high + 1e-9)
    ratio = (high - low) / (fit.ci_high - fit.ci_low)
    assert np.all((ratio > 0.7) & (ratio < 1.3)), ratio


def test_bootstrap_keeps_the_anchor_shift() -> None:
    options = FitOptions(anchor_model="model-003", anchor_score=1500.0)
    plain_low, _ = bootstrap_ci(COUNTS, FitOptions(), rounds=10, seed=2)
    low, _ = bootstrap_ci(COUNTS, options, rounds=10, seed=2)
    shift = fit_board(COUNTS, options).scores - fit_board(COUNTS).scores
    np.testing.assert_allclose(low - plain_low, shift, atol=1e-9)


@pytest.mark.parametrize(
    "counts",
    [
        PairCounts(),
        PairCounts.from_triples({}, models=("a",)),
        PairCounts.from_triples({("a", "b", "model_a"): 4}),
    ],
    ids=["empty", "one model", "never lost"],
)
def test_bootstrap_degenerate_boards(counts: PairCounts) -> None:
    low, high = bootstrap_ci(counts, FitOptions(), rounds=5, seed=0)
    assert low.shape == high.shape == (len(counts.models),)
    assert np.all(np.isfinite(low)) and np.all(low <= high)


def test_zero_rounds_gives_the_point_estimate() -> None:
    low, high = bootstrap_ci(COUNTS, FitOptions(), rounds=0, seed=0)
    np.testing.assert_allclose(low, fit_board(COUNTS).scores)
    np.testing.assert_allclose(high, low)


def test_resamples_must_match_models() -> None:
    other = PairCounts.from_triples({("x", "y", "tie"): 1})
    with pytest.raises(ValueError, match="same models"):
        bootstrap_ci_from_resamples(COUNTS, FitOptions(), [other])
    with pytest.raises(ValueError):
        list(resample_counts(COUNTS, rounds=-1, seed=0))
