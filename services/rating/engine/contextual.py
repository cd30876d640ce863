"""Style-controlled standings: contextual Bradley-Terry on individual battles.

Reproduces ``arena_rank.models.contextual_bradley_terry.ContextualBradleyTerry`` (arena-rank
0.1.1) on the battles of one board:

- features: arena-rank's normalisation (see :mod:`services.rating.engine.style`);
- weights: ``ContextualPairDataset``'s inverse propensity ``1 / max(n_pair, min_pair_count)``
  divided by its mean (``reweighted=True`` is arena-rank's default here, unlike plain BT);
- loss: ``-mean_k w_k [y_k z_k - softplus(z_k)] + reg / 2 * ||beta||^2``; the L2 penalty is on
  the style coefficients only; ties (both kinds) are ``y = 1/2``;
- theta has no penalty in arena-rank and is identified by its L-BFGS starting at 0 (every
  gradient sums to 0 over the models), i.e. theta is centred at mean 0. Podium solves by
  Newton with Podium's tiny ``l2`` ridge on theta (whose optimum is centred too) and centres;
- scores ``alpha * theta + init_rating`` (or anchored, as plain boards);
- sandwich CIs exactly as arena-rank: ``H`` is the mean-scaled Hessian of the likelihood
  *without* the L2 term plus ``hessian_reg * I`` on every parameter, ``G`` the mean-scaled
  outer product of per-battle gradients minus ``reg^2 / n * beta beta^T``, and the variance is
  ``diag(H^-1 G H^-1) / n``. The same diagonal gives the coefficients' CIs (arena-rank does
  not report those).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
from scipy.linalg import LinAlgError, cho_factor, cho_solve
from scipy.special import ndtri

from services.rating.engine.battles import BattleColumns
from services.rating.engine.board import BoardFit, assemble_fit
from services.rating.engine.contextual_design import ContextualDesign, FloatMatrix, FloatVector
from services.rating.engine.counts import OUTCOMES, PairCounts
from services.rating.engine.newton import solve_linear
from services.rating.engine.options import FitOptions
from services.rating.engine.pairs import PairData

_LINE_SEARCH_ABOVE = 0.5
_ARMIJO = 1e-4
_MIN_STEP_FRACTION = 2.0**-30


@dataclass(frozen=True, slots=True)
class StyleOptions:
    """``board``: scale, CIs, anchor, weights, solver tolerances (as plain boards; reweighted by
    default, as arena-rank's ``ContextualPairDataset``). ``reg``: arena-rank's L2 weight on the
    style coefficients (its default 1.0, on the mean loss)."""

    board: FitOptions = field(default_factory=lambda: FitOptions(reweighted=True))
    reg: float = 1.0

    def __post_init__(self) -> None:
        if not (self.reg >= 0.0 and np.isfinite(self.reg)):
            raise ValueError(f"reg must be finite and >= 0, got {self.reg}")


class StyleCoefficient(NamedTuple):
    """A style coefficient in logit units per standard deviation of its normalised feature."""

    value: float
    ci_low: float
    ci_high: float


@dataclass(frozen=True, slots=True, eq=False)
class ContextualFit:
    """A style-controlled board: the standings rows (``board``) and the style coefficients."""

    board: BoardFit
    beta: FloatVector
    coefficients: Mapping[str, StyleCoefficient]
    feature_mean: FloatVector
    feature_std: FloatVector
    battles: int


def fit_contextual(
    battles: BattleColumns,
    models: tuple[str, ...] | None = None,
    options: StyleOptions | None = None,
    warm_start: ContextualFit | None = None,
) -> ContextualFit:
    """Fit the style-controlled twin of a board from its battles.

    ``models``: the board's model ids (sorted on the way in; must include every model of
    ``battles``; defaults to those). ``warm_start``: a previous fit of the same board.
    """
    options = options or StyleOptions()
    board_options = options.board
    names = tuple(sorted(set(models if models is not None else battles.models)))
    design = ContextualDesign.build(
        battles, names, board_options.reweighted, board_options.min_pair_count
    )
    params0 = _initial_params(names, battles.features, warm_start)
    params, iterations, converged = _newton(design, params0, options)
    theta = params[: design.m] - (params[: design.m].mean() if design.m else 0.0)
    params[: design.m] = theta
    std = np.sqrt(sandwich_variance(design, params, options))
    counts = _counts(battles, design, names)
    data = PairData.from_counts(counts, board_options.reweighted, board_options.min_pair_count)
    board = assemble_fit(
        counts,
        data,
        board_options,
        theta,
        std[: design.m],
        converged=converged,
        iterations=iterations,
    )
    beta = params[design.m :].copy()
    z = float(ndtri(0.5 + board_options.ci_level / 2.0))
    beta_std = std[design.m :]
    coefficients = {
        name: StyleCoefficient(float(v), float(v - z * s), float(v + z * s))
        for name, v, s in zip(battles.features, beta, beta_std, strict=True)
    }
    return ContextualFit(
        board=board,
        beta=beta,
        coefficients=coefficients,
        feature_mean=design.feature_mean,
        feature_std=design.feature_std,
        battles=design.n,
    )


def _initial_params(
    models: tuple[str, ...], features: tuple[str, ...], warm_start: ContextualFit | None
) -> FloatVector:
    params = np.zeros(len(models) + len(features), dtype=np.float64)
    if warm_start is None:
        return params
    previous = dict(zip(warm_start.board.models, warm_start.board.theta.tolist(), strict=True))
    previous_beta = {name: c.value for name, c in warm_start.coefficients.items()}
    values = [previous.get(name, 0.0) for name in models]
    values += [previous_beta.get(name, 0.0) for name in features]
    params[:] = values
    params[~np.isfinite(params)] = 0.0
    return params


def _penalties(design: ContextualDesign, options: StyleOptions) -> FloatVector:
    """Diagonal of the quadratic penalty on the summed loss: Podium's ridge on theta, arena-rank's
    ``reg`` (times n, since arena-rank penalises the mean loss) on beta."""
    ridge = np.empty(design.m + design.k, dtype=np.float64)
    ridge[: design.m] = options.board.l2 * max(float(design.w.sum()), 1.0)
    ridge[design.m :] = options.reg * design.n
    return ridge


def objective(design: ContextualDesign, params: FloatVector, ridge: FloatVector) -> float:
    """Summed weighted negative log-likelihood plus the penalties (n times arena-rank's)."""
    return design.negative_log_likelihood(params) + 0.5 * float(ridge @ (params * params))


def _newton(
    design: ContextualDesign, params0: FloatVector, options: StyleOptions
) -> tuple[FloatVector, int, bool]:
    """Damped Newton from ``params0``; converged when a full step is below ``tol``
    (or quadratic convergence leaves less than ``tol``)."""
    params = params0.copy()
    if design.n == 0:
        return params, 0, True
    ridge = _penalties(design, options)
    tol, previous = options.board.tol, np.inf
    for iteration in range(1, options.board.max_iter + 1):
        p = design.probabilities(params)
        grad = design.scatter(design.w * (p - design.y)) + ridge * params
        hess = design.gram(design.w * p * (1.0 - p))
        hess[np.diag_indices_from(hess)] += ridge
        step = -solve_linear(hess, grad)
        length = float(np.max(np.abs(step)))
        if not np.isfinite(length):
            return params, iteration, False
        fraction = 1.0
        if length > _LINE_SEARCH_ABOVE:
            fraction = _backtrack(design, params, step, float(grad @ step), ridge)
        params += fraction * step
        if fraction == 1.0 and _converged(length, previous, tol):
            return params, iteration, True
        previous = length if fraction == 1.0 else np.inf
    return params, options.board.max_iter, False


def _converged(length: float, previous: float, tol: float) -> bool:
    if length <= tol:
        return True
    if not (np.isfinite(previous) and 0.0 < previous and length <= 0.1 * previous):
        return False
    return length**3 / previous**2 <= tol  # the error left after a quadratic step


def _backtrack(
    design: ContextualDesign,
    params: FloatVector,
    step: FloatVector,
    slope: float,
    ridge: FloatVector,
) -> float:
    start = objective(design, params, ridge)
    fraction = 1.0
    while fraction > _MIN_STEP_FRACTION:
        trial = objective(design, params + fraction * step, ridge)
        if trial <= start + _ARMIJO * fraction * slope:
            return fraction
        fraction *= 0.5
    return fraction


def sandwich_variance(
    design: ContextualDesign, params: FloatVector, options: StyleOptions
) -> FloatVector:
    """arena-rank's sandwich: ``diag(H^-1 G H^-1) / n`` over (theta, beta)."""
    n = design.n
    if n == 0:
        return np.zeros(design.m + design.k, dtype=np.float64)
    p = design.probabilities(params)
    hess, grad_cov = design.grams(
        design.w * p * (1.0 - p) / n, (design.w * (design.y - p)) ** 2 / n
    )
    hess[np.diag_indices_from(hess)] += options.board.hessian_reg
    beta = params[design.m :]
    grad_cov[design.m :, design.m :] -= (options.reg**2 / n) * np.outer(beta, beta)
    hess_inv = _inverse(hess)
    variance: FloatVector = np.einsum("ij,ij->i", hess_inv @ grad_cov, hess_inv) / n
    return np.maximum(variance, 0.0)


def _inverse(matrix: FloatMatrix) -> FloatMatrix:
    identity = np.eye(matrix.shape[0])
    try:
        inverse: FloatMatrix = cho_solve(cho_factor(matrix, check_finite=False), identity)
        if np.all(np.isfinite(inverse)):
            return inverse
    except (LinAlgError, ValueError):
        pass
    return np.asarray(np.linalg.pinv(matrix, hermitian=True), dtype=np.float64)


def _counts(battles: BattleColumns, design: ContextualDesign, names: tuple[str, ...]) -> PairCounts:
    """Outcome counts over the board's sorted models (for tallies, flags and connectivity)."""
    m = design.m
    flat = (battles.outcome.astype(np.intp) * m + design.a) * m + design.b
    cells = np.bincount(flat, minlength=len(OUTCOMES) * m * m).reshape(len(OUTCOMES), m, m)
    return PairCounts(names, cells.astype(np.int64))
