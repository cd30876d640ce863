"""Bootstrap CIs: refit multinomial resamples of the vote counts."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from services.rating.engine.board import anchor_offset, fit_board
from services.rating.engine.counts import PairCounts
from services.rating.engine.newton import fit_theta
from services.rating.engine.options import FitOptions
from services.rating.engine.pairs import FloatVector, PairData, propensity_weights


def resample_counts(counts: PairCounts, rounds: int, seed: int) -> Iterator[PairCounts]:
    """``rounds`` multinomial resamples of the votes (same total, cell p = count / total)."""
    if rounds < 0:
        raise ValueError(f"rounds must be >= 0, got {rounds}")
    cells = counts.cells.reshape(-1)
    total = int(cells.sum())
    played = np.flatnonzero(cells)
    rng = np.random.default_rng(seed)
    for _ in range(rounds):
        drawn = np.zeros(cells.size, dtype=np.int64)
        if total:
            drawn[played] = rng.multinomial(total, cells[played] / total)
        yield PairCounts(counts.models, drawn.reshape(counts.cells.shape))


def bootstrap_ci(
    counts: PairCounts, options: FitOptions, rounds: int, seed: int
) -> tuple[FloatVector, FloatVector]:
    """Percentile bootstrap CI bounds (rating points), aligned with ``counts.models``."""
    return bootstrap_ci_from_resamples(counts, options, resample_counts(counts, rounds, seed))


def bootstrap_ci_from_resamples(
    counts: PairCounts, options: FitOptions, resamples: Iterator[PairCounts] | list[PairCounts]
) -> tuple[FloatVector, FloatVector]:
    """Percentile CIs over refits of the given resamples, as arena-rank's bootstrap.

    Like arena-rank, the inverse-propensity weights stay those of the original counts,
    every resample is centred at mean theta 0, and the quantiles are linear-interpolated.
    The anchor shift of the point fit applies to every resample.
    """
    point = fit_board(counts, options)
    weight = propensity_weights(counts.battles(), options.reweighted, options.min_pair_count)
    samples: list[FloatVector] = []
    for sample in resamples:
        if sample.models != counts.models:
            raise ValueError("resamples must have the same models as counts")
        data = PairData.from_matrices(sample.wins(), sample.ties(), weight)
        result = fit_theta(data, point.theta, options.l2, options.tol, options.max_iter)
        samples.append(result.theta - result.theta.mean() if result.theta.size else result.theta)
    m = len(counts.models)
    if not samples:
        return point.scores.copy(), point.scores.copy()
    offset = anchor_offset(counts.models, point.theta, options)
    scores = options.alpha * np.vstack(samples).reshape(len(samples), m) + offset
    tail = (1.0 - options.ci_level) / 2.0
    low: FloatVector = np.quantile(scores, tail, axis=0)
    high: FloatVector = np.quantile(scores, 1.0 - tail, axis=0)
    return low, high
