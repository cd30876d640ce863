"""Newton's method for the (ridge-penalised) Bradley-Terry maximum likelihood."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.linalg import LinAlgError, cho_factor, cho_solve
from scipy.special import expit

from services.rating.engine.counts import FloatMatrix
from services.rating.engine.pairs import FloatVector, PairData

_LINE_SEARCH_ABOVE = 0.5  # Newton steps longer than this (in theta) are line-searched
_ARMIJO = 1e-4
_MIN_STEP_FRACTION = 2.0**-30


@dataclass(frozen=True, slots=True)
class NewtonResult:
    theta: FloatVector
    iterations: int
    converged: bool


def ridge_for(data: PairData, l2: float) -> float:
    """The penalty weight: ``l2`` per unit of (weighted) vote, at least ``l2``."""
    return l2 * max(data.total_weight, 1.0)


def objective(data: PairData, theta: FloatVector, ridge: float) -> float:
    """Negative log-likelihood (weighted, ties as half wins) plus the ridge penalty."""
    d = theta[data.i] - theta[data.j]
    nll = data.weighted_battles @ np.logaddexp(0.0, d) - data.weighted_score_i @ d
    return float(nll + 0.5 * ridge * (theta @ theta))


def solve_linear(matrix: FloatMatrix, rhs: FloatVector) -> FloatVector:
    """Solve a symmetric positive definite system; least squares if it is numerically not."""
    try:
        factor = cho_factor(matrix, lower=True, check_finite=False)
        solution: FloatVector = cho_solve(factor, rhs, check_finite=False)
        if np.all(np.isfinite(solution)):
            return solution
    except (LinAlgError, ValueError):
        pass
    return np.asarray(np.linalg.lstsq(matrix, rhs, rcond=None)[0], dtype=np.float64)


def fit_theta(
    data: PairData, theta0: FloatVector, l2: float, tol: float, max_iter: int
) -> NewtonResult:
    """Minimise :func:`objective` by Newton's method from ``theta0``.

    Full Newton steps near the optimum; backtracking (Armijo) for long steps. Converged
    when a full step no longer than ``tol`` has been taken, or when the convergence is
    visibly quadratic (``|step_k| <= |step_k-1| / 10``) and the error left after the step,
    estimated as ``C |step_k|^2`` with ``C = |step_k| / |step_k-1|^2``, is below ``tol``
    (saves the confirming iteration of a warm start).
    """
    theta = np.array(theta0, dtype=np.float64, copy=True)
    if data.size == 0:
        return NewtonResult(theta, 0, True)
    ridge = ridge_for(data, l2)
    nw = data.weighted_battles
    sw = data.weighted_score_i
    previous = np.inf
    for iteration in range(1, max_iter + 1):
        p = expit(theta[data.i] - theta[data.j])
        grad = data.scatter(nw * p - sw) + ridge * theta
        hess = data.laplacian(nw * p * (1.0 - p), ridge)
        step = -solve_linear(hess, grad)
        length = float(np.max(np.abs(step)))
        if not np.isfinite(length):
            return NewtonResult(theta, iteration, False)
        fraction = 1.0
        if length > _LINE_SEARCH_ABOVE:
            fraction = _backtrack(data, theta, step, float(grad @ step), ridge)
        theta += fraction * step
        if fraction == 1.0 and _converged(length, previous, tol):
            return NewtonResult(theta, iteration, True)
        previous = length if fraction == 1.0 else np.inf
    return NewtonResult(theta, max_iter, False)


def _converged(length: float, previous: float, tol: float) -> bool:
    if length <= tol:
        return True
    if not (np.isfinite(previous) and previous > 0.0 and length <= 0.1 * previous):
        return False
    remaining = length**3 / previous**2
    return remaining <= tol


def _backtrack(
    data: PairData, theta: FloatVector, step: FloatVector, slope: float, ridge: float
) -> float:
    start = objective(data, theta, ridge)
    fraction = 1.0
    while fraction > _MIN_STEP_FRACTION:
        if objective(data, theta + fraction * step, ridge) <= start + _ARMIJO * fraction * slope:
            return fraction
        fraction *= 0.5
    return fraction
