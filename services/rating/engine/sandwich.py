"""Sandwich (robust) variance of theta: ``H^-1 G H^-1``, as arena-rank computes it."""

from __future__ import annotations

import numpy as np
from scipy.linalg.lapack import dpotrf, dpotri
from scipy.special import expit

from services.rating.engine.counts import FloatMatrix
from services.rating.engine.pairs import FloatVector, PairData

_MIN_RIDGE = 1e-12


def sandwich_ridge(data: PairData, hessian_reg: float, reweighted: bool) -> float:
    """arena-rank's ridge on the Hessian diagonal.

    ``hessian_reg * total battles`` when every weight is 1 (not reweighted), else
    ``hessian_reg`` alone (reweighted weights are at most 1/min_pair_count, never all 1).
    """
    factor = 1.0 if reweighted else data.total_battles
    return max(hessian_reg * factor, _MIN_RIDGE)


def sandwich_variance(data: PairData, theta: FloatVector, ridge: float) -> FloatVector:
    """Diagonal of ``H^-1 G H^-1`` at ``theta``.

    H is the weighted Fisher information plus ``ridge * I``; G sums, over each group of
    identical battles (pair, outcome), ``count * g g^T`` with g the weighted per-battle
    gradient ``w (y - p) (e_i - e_j)`` (y = 1 win, 0 loss, 1/2 tie).
    """
    if data.size == 0:
        return np.zeros(0, dtype=np.float64)
    p = expit(theta[data.i] - theta[data.j])
    hess = data.laplacian(data.weighted_battles * p * (1.0 - p), ridge)
    outer = data.weight**2 * (
        data.wins_i * (1.0 - p) ** 2 + data.wins_j * p**2 + data.ties * (0.5 - p) ** 2
    )
    grad_cov = data.laplacian(outer, 0.0)
    hess_inv = _spd_inverse(hess)
    left = hess_inv @ grad_cov
    variance: FloatVector = np.einsum("ij,ij->i", left, hess_inv)
    return np.maximum(variance, 0.0)


def _spd_inverse(matrix: FloatMatrix) -> FloatMatrix:
    """Inverse through Cholesky (LAPACK potrf + potri); pseudo-inverse if that fails."""
    factor, info = dpotrf(matrix, lower=True, clean=False)
    if info == 0:
        inverse, info = dpotri(factor, lower=True)
        if info == 0:
            full = np.tril(inverse)
            full += np.tril(inverse, -1).T
            if np.all(np.isfinite(full)):
                return np.asarray(full, dtype=np.float64)
    return np.asarray(np.linalg.pinv(matrix, hermitian=True), dtype=np.float64)
