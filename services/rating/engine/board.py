"""Fit a board: Bradley-Terry scores, sandwich CIs and ranks (the standings rows are made from a
fit by services/rating/standings.py, in the shape of shared/standings.py)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.special import ndtri

from services.rating.engine.counts import PairCounts
from services.rating.engine.newton import fit_theta
from services.rating.engine.options import FitOptions
from services.rating.engine.pairs import FloatVector, PairData
from services.rating.engine.sandwich import sandwich_ridge, sandwich_variance

IntVector = NDArray[np.int64]
BoolVector = NDArray[np.bool_]


@dataclass(frozen=True, slots=True, eq=False)
class BoardFit:
    """Standings of one board; every array is aligned with ``models`` (sorted ids).

    ``theta`` is the fitted log-strength centred at mean 0 (natural-log units), before the
    anchor shift; ``scores``/``ci_low``/``ci_high`` are in rating points, anchored.
    """

    models: tuple[str, ...]
    theta: FloatVector
    scores: FloatVector
    ci_low: FloatVector
    ci_high: FloatVector
    std_err: FloatVector
    rank: IntVector
    rank_ub: IntVector
    votes: IntVector
    wins: IntVector
    losses: IntVector
    ties: IntVector
    preliminary: BoolVector
    converged: bool
    iterations: int
    connected: bool
    mle_exists: bool
    options: FitOptions

    def order(self) -> NDArray[np.intp]:
        """Indices sorted by score descending, ties broken by model id."""
        return _order(self.scores)


def fit_board(
    counts: PairCounts, options: FitOptions | None = None, warm_start: BoardFit | None = None
) -> BoardFit:
    """Fit ``counts``; never raises and never returns NaN, whatever the board looks like."""
    options = options or FitOptions()
    data = PairData.from_counts(counts, options.reweighted, options.min_pair_count)
    result = fit_theta(
        data, _initial_theta(counts.models, warm_start), options.l2, options.tol, options.max_iter
    )
    theta = result.theta - result.theta.mean() if result.theta.size else result.theta
    ridge = sandwich_ridge(data, options.hessian_reg, options.reweighted)
    std_err = np.sqrt(sandwich_variance(data, theta, ridge))
    return assemble_fit(
        counts,
        data,
        options,
        theta,
        std_err,
        converged=result.converged,
        iterations=result.iterations,
    )


def _initial_theta(models: tuple[str, ...], warm_start: BoardFit | None) -> FloatVector:
    """Previous theta matched by model id; new models start at 0."""
    theta0 = np.zeros(len(models), dtype=np.float64)
    if warm_start is None:
        return theta0
    previous = dict(zip(warm_start.models, warm_start.theta.tolist(), strict=True))
    for k, model in enumerate(models):
        value = previous.get(model, 0.0)
        theta0[k] = value if np.isfinite(value) else 0.0
    return theta0


def assemble_fit(
    counts: PairCounts,
    data: PairData,
    options: FitOptions,
    theta: FloatVector,
    std_err: FloatVector,
    *,
    converged: bool,
    iterations: int,
) -> BoardFit:
    """Scores, normal-approximation CIs, ranks and per-model tallies from a fitted theta."""
    z = float(ndtri(0.5 + options.ci_level / 2.0))
    offset = anchor_offset(counts.models, theta, options)
    scores = options.alpha * theta + offset
    half_width = options.alpha * z * std_err
    wins, ties, battles = counts.wins(), counts.ties(), counts.battles()
    votes = battles.sum(axis=1)
    return BoardFit(
        models=counts.models,
        theta=theta,
        scores=scores,
        ci_low=scores - half_width,
        ci_high=scores + half_width,
        std_err=options.alpha * std_err,
        rank=rank_by_score(scores),
        rank_ub=rank_upper_bound(scores - half_width, scores + half_width),
        votes=votes,
        wins=wins.sum(axis=1),
        losses=wins.sum(axis=0),
        ties=ties.sum(axis=1),
        preliminary=votes < options.preliminary_votes,
        converged=converged,
        iterations=iterations,
        connected=data.is_connected(),
        mle_exists=data.mle_exists(),
        options=options,
    )


def anchor_offset(models: tuple[str, ...], theta: FloatVector, options: FitOptions) -> float:
    """Rating of theta = 0: ``init_rating``, or whatever puts the anchor at its score."""
    if options.anchor_model is None or options.anchor_model not in models:
        return options.init_rating
    anchor = models.index(options.anchor_model)
    return options.anchor_score - options.alpha * float(theta[anchor])


def _order(scores: FloatVector) -> NDArray[np.intp]:
    # lexsort is stable: equal scores keep the sorted-id order
    order: NDArray[np.intp] = np.lexsort((np.arange(scores.size), -scores))
    return order


def rank_by_score(scores: FloatVector) -> IntVector:
    """1-based position by score (descending); equal scores ranked by model id."""
    rank = np.empty(scores.size, dtype=np.int64)
    rank[_order(scores)] = np.arange(1, scores.size + 1)
    return rank


def rank_upper_bound(ci_low: FloatVector, ci_high: FloatVector) -> IntVector:
    """``1 + #{m' : ci_low[m'] > ci_high[m]}`` for each model m."""
    sorted_low = np.sort(ci_low)
    better = sorted_low.size - np.searchsorted(sorted_low, ci_high, side="right")
    return (1 + better).astype(np.int64)
