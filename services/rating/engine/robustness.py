"""Rank robustness: how many votes would have to go for two adjacent models to swap.

A first-order influence approximation in the spirit of AMIP (Broderick, Giordano, Meager, "An
Automatic Finite-Sample Robustness Metric"). At the fitted theta, dropping one vote of a cell
(pair i-j, outcome y seen from i) moves theta by about ``c(y) H^-1 (e_i - e_j)``, H being the
Hessian of the fit's objective; so it moves the gap ``d = theta_a - theta_b`` of two adjacent
models by ``c(y) (u_i - u_j)`` with ``u = H^-1 (e_a - e_b)``. The margin is the least number
of votes, taken most adverse first (every vote of a cell moves d alike: cells are taken whole or
in part, with their multiplicities), whose summed influences close the gap.

``c(y)`` respects arena-rank's reweighting. With a fixed per-battle weight w (not reweighted,
or a pair with at most ``min_pair_count`` battles) ``c = w (p - y)``, p the fitted probability
that i beats j. With weight ``1/n`` (n battles of the pair, more than ``min_pair_count``) the
pair's total weight stays 1 whatever is dropped; dropping a vote only moves the pair's mean
score s = (wins_i + ties/2) / n, and ``c = (s - y) / n``.

A straight first-order count overestimates (up to 3x on a wide gap, against exact refits): as
a's wins go, p_ax falls and each further win weighs more. So the fixed-weight ``c`` of a's and
b's votes is averaged (trapezoid rule) between the fit and the point where a and b meet halfway
(p there; u scaled by the ratio of a's, b's Fisher information at the fit to there, as u goes
as 1/h). Against exact refits on small boards the count is then within 0.66-1.0x of the exact
one, 0.93x on average (tests/unit/engine/test_robustness.py; docs/decisions.md).

Candidates are the votes of a or b (against anyone): a vote between two other models moves the
gap ~M times less, and leaving them out keeps the cost at O(M) per adjacent pair (O(M^2) per
board instead of O(M x played pairs)). Since u is largest at a and smallest at b (u solves a
Laplacian system with its source at a and its sink at b), a's wins and b's losses always close
the gap and a's losses and b's wins never do; ties do when they were the better side's worse
result (a tie of a against a weaker model, of b against a stronger one). So four kinds of cells
per opponent x: a beat x, a tied x, b lost to x, b tied x.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

import numpy as np
from numpy.typing import NDArray
from scipy.linalg.lapack import dpotrf, dpotri
from scipy.special import expit

from services.rating.engine.board import BoardFit
from services.rating.engine.counts import FloatMatrix, IntMatrix, PairCounts
from services.rating.engine.newton import solve_linear

Result = Literal["win", "loss", "tie"]
# the cell kinds of :func:`_influences`, in column-block order: (whose vote, its result)
_KINDS: Final[tuple[tuple[int, Result], ...]] = ((0, "win"), (0, "tie"), (1, "loss"), (1, "tie"))
_INDEX_BITS_MAX: Final = 16  # column index packed into a float32 sort key up to 2^16 columns
_HEAD: Final = 64  # most closing cells counted first; a gap they leave open is counted in full
IndexMatrix = NDArray[np.intp]
Float32Matrix = NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class AdverseVotes:
    """``votes`` votes of ``model`` against ``opponent`` with ``result`` (from ``model``'s side),
    each closing the gap by about ``influence`` (in theta, natural-log units)."""

    model: str
    opponent: str
    result: Result
    votes: int
    influence: float


@dataclass(frozen=True, slots=True)
class _Closing:
    """For adjacent pairs r = (a, b) = (top[r], below[r]): ``per_vote[r, c]``, how much one vote
    of cell c closes the gap theta_a - theta_b (0 where it would widen it), columns in blocks of
    M as ``_KINDS`` (opponent x = c mod M); ``wins``/``ties`` the board's tallies."""

    top: IndexMatrix
    below: IndexMatrix
    per_vote: Float32Matrix
    wins: IntMatrix
    ties: IntMatrix

    def votes(self, rows: IndexMatrix, columns: IndexMatrix) -> IntMatrix:
        """Vote counts of cells ``columns`` (broadcast with ``rows``); b's cells against a are
        counted as a's and are 0 here."""
        kind, x = np.divmod(columns, self.wins.shape[0])
        a = self.top[rows]
        first = np.where(kind < 2, a, self.below[rows])
        won = self.wins[np.where(kind == 2, x, first), np.where(kind == 2, first, x)]
        n: IntMatrix = np.where(kind % 2 == 1, self.ties[first, x], won)
        n[(kind >= 2) & (x == a)] = 0
        return n


def rank_margins(counts: PairCounts, fit: BoardFit) -> list[int | None]:
    """For each row of the published order (``fit.order()``), the approximate number of votes
    whose removal would swap it with the next row; ``None`` for the last row, and where the
    votes of the two models cannot close the gap."""
    order = fit.order()
    if order.size < 2:
        return [None] * order.size
    closing = _closing(counts, fit, order[:-1], order[1:])
    gaps = fit.theta[order[:-1]] - fit.theta[order[1:]]
    columns, per_vote = _descending(closing.per_vote)
    margins = _votes_to_close(closing, gaps, columns, per_vote)
    return [*margins, None]


def adverse_votes(counts: PairCounts, fit: BoardFit, model: str, below: str) -> list[AdverseVotes]:
    """The votes :func:`rank_margins` would drop to put ``below`` above ``model``, most closing
    first (the last cell only as far as needed); empty when the gap cannot be closed."""
    a, b = counts.index(model), counts.index(below)
    closing = _closing(counts, fit, np.array([a], np.intp), np.array([b], np.intp))
    gap = fit.theta[[a]] - fit.theta[[b]]
    columns, per_vote = _descending(closing.per_vote)
    needed = _votes_to_close(closing, gap, columns, per_vote)[0]
    votes = closing.votes(np.zeros(1, np.intp), columns)[0].tolist()
    out: list[AdverseVotes] = []
    for column, n, each in zip(columns[0].tolist(), votes, per_vote[0].tolist(), strict=True):
        if not needed:
            break
        if n:
            kind, x = divmod(column, len(counts))
            side, result = _KINDS[kind]
            take = min(n, needed)
            out.append(AdverseVotes(counts.models[(a, b)[side]], counts.models[x], result, take,
                                    each))
            needed -= take
    return out


def _closing(counts: PairCounts, fit: BoardFit, top: IndexMatrix, below: IndexMatrix
             ) -> _Closing:
    options = fit.options
    wins, ties = counts.wins(), counts.ties()
    battles = wins + wins.T + ties
    p = expit(fit.theta[:, None] - fit.theta[None, :])
    n = battles.astype(np.float64)
    if options.reweighted:
        weight = 1.0 / np.maximum(n, float(options.min_pair_count))
    else:
        weight = np.ones_like(n)
    u = _gap_directions(weight * battles, p * (1.0 - p), options.l2, top, below)
    rows = np.arange(top.size)
    to_a = u - u[rows, top][:, None]  # u_x - u_a <= 0: a's vote against x moves the gap by
    to_b = u - u[rows, below][:, None]  # -coef * to_a; u_x - u_b >= 0: b's, by -coef * to_b
    fixed_a, fixed_b = weight[top], weight[below]
    coef_win, coef_tie_a = fixed_a * (p[top] - 1.0), fixed_a * (p[top] - 0.5)
    coef_loss, coef_tie_b = fixed_b * p[below], fixed_b * (p[below] - 0.5)
    # averaged with the same where a and b meet halfway (the trapezoid rule along the path)
    p_mid, scale_a, scale_b = _halfway(fit.theta, weight * battles, p, top, below)
    coef_win = 0.5 * (coef_win + fixed_a * (p_mid - 1.0) * scale_a)
    coef_tie_a = 0.5 * (coef_tie_a + fixed_a * (p_mid - 0.5) * scale_a)
    coef_loss = 0.5 * (coef_loss + fixed_b * p_mid * scale_b)
    coef_tie_b = 0.5 * (coef_tie_b + fixed_b * (p_mid - 0.5) * scale_b)
    if options.reweighted:
        # weight 1/n above min_pair_count: the pair's total weight stays 1, its mean score moves
        free = n > options.min_pair_count
        mean = np.divide(wins + 0.5 * ties, n, out=np.zeros_like(n), where=free)
        free_a, free_b, mean_a, mean_b = free[top], free[below], mean[top], mean[below]
        coef_win = np.where(free_a, (mean_a - 1.0) * fixed_a, coef_win)
        coef_tie_a = np.where(free_a, (mean_a - 0.5) * fixed_a, coef_tie_a)
        coef_loss = np.where(free_b, mean_b * fixed_b, coef_loss)
        coef_tie_b = np.where(free_b, (mean_b - 0.5) * fixed_b, coef_tie_b)
    m = p.shape[0]
    per_vote = np.empty((top.size, 4 * m), dtype=np.float32)
    np.multiply(coef_win, to_a, out=per_vote[:, :m], casting="same_kind")
    np.multiply(coef_tie_a, to_a, out=per_vote[:, m:2 * m], casting="same_kind")
    np.multiply(coef_loss, to_b, out=per_vote[:, 2 * m:3 * m], casting="same_kind")
    np.multiply(coef_tie_b, to_b, out=per_vote[:, 3 * m:], casting="same_kind")
    np.maximum(per_vote, 0.0, out=per_vote)
    return _Closing(top, below, per_vote, wins, ties)


def _halfway(theta: FloatMatrix, weighted: FloatMatrix, p: FloatMatrix, top: IndexMatrix,
             below: IndexMatrix) -> tuple[FloatMatrix, FloatMatrix, FloatMatrix]:
    """Where a and b meet halfway (theta_a = theta_b = their mean): the win probability of
    either against each x, and how much less (or more) a vote of a, of b, moves the gap there
    (the ratio of their Fisher information at the fit to that halfway: u scales as 1/h)."""
    rows = np.arange(top.size)
    mid = 0.5 * (theta[top] + theta[below])
    p_mid = expit(mid[:, None] - theta[None, :])
    p_mid[rows, top] = p_mid[rows, below] = 0.5
    info_mid = p_mid * (1.0 - p_mid)
    info = p * (1.0 - p)
    scale_a = _ratio((weighted[top] * info[top]).sum(axis=1),
                     (weighted[top] * info_mid).sum(axis=1))
    scale_b = _ratio((weighted[below] * info[below]).sum(axis=1),
                     (weighted[below] * info_mid).sum(axis=1))
    return p_mid, scale_a[:, None], scale_b[:, None]


def _ratio(at_fit: FloatMatrix, halfway: FloatMatrix) -> FloatMatrix:
    out: FloatMatrix = np.divide(at_fit, halfway, out=np.ones_like(at_fit), where=halfway > 0)
    return out


def _gap_directions(
    weighted: FloatMatrix, information: FloatMatrix, l2: float, top: IndexMatrix,
    below: IndexMatrix,
) -> FloatMatrix:
    """Rows ``u_r = H^-1 (e_a - e_b)`` for each (a, b) = (top[r], below[r]).

    H is the Hessian of the fit's objective (``newton.fit_theta``'s): the Laplacian of
    ``weighted * information`` (weighted battles times p(1 - p) per pair) plus the fit's
    ridge. The Laplacian is singular along the all-ones vector, which only the tiny ridge
    lifts; the rows are solved with ``H + c 11^T / M`` instead (c its mean diagonal), which
    gives the same result on every ``e_a - e_b`` (orthogonal to 1) and is well conditioned.
    """
    m = weighted.shape[0]
    hess = -(weighted * information)
    ridge = l2 * max(float(weighted.sum()) / 2.0, 1.0)  # newton.ridge_for
    hess[np.diag_indices(m)] = 0.0
    hess[np.diag_indices(m)] = ridge - hess.sum(axis=1)
    hess += max(float(np.trace(hess)) / m, 1e-12) / m
    inverse = _spd_inverse(hess)
    directions: FloatMatrix = inverse[top] - inverse[below]
    return directions


def _spd_inverse(matrix: FloatMatrix) -> FloatMatrix:
    """Inverse through Cholesky (LAPACK potrf + potri: half the work of solving for M right-hand
    sides); a least-squares solve if the matrix is numerically not positive definite."""
    factor, info = dpotrf(matrix, lower=True, clean=False)
    if info == 0:
        inverse, info = dpotri(factor, lower=True)
        if info == 0:
            full = np.tril(inverse)
            full += np.tril(inverse, -1).T
            if np.all(np.isfinite(full)):
                return np.asarray(full, dtype=np.float64)
    identity = np.eye(matrix.shape[0], dtype=np.float64)
    return np.asarray(solve_linear(matrix, identity), dtype=np.float64)


def _descending(per_vote: Float32Matrix) -> tuple[IndexMatrix, Float32Matrix]:
    """Each row's columns, largest value first, with those values. Sorted as float32 keys with
    the column index packed into their low mantissa bits (an argsort of float64 was 3-5x
    slower); the values keep 23 - bits bits (~0.05% at 300 models), and cells within that of
    each other are in any order: not a vote's difference to the count."""
    columns = per_vote.shape[1]
    bits = max(1, (columns - 1).bit_length())
    if bits > _INDEX_BITS_MAX:
        order: IndexMatrix = np.argsort(-per_vote, axis=1, kind="stable")
        return order, np.take_along_axis(per_vote, order, axis=1)
    mask = np.int32((1 << bits) - 1)
    keys = per_vote.view(np.int32) & ~mask  # non-negative floats sort as their bits
    keys |= np.arange(columns, dtype=np.int32)
    keys.sort(axis=1)
    keys = keys[:, ::-1]
    values: Float32Matrix = (keys & ~mask).view(np.float32)
    return (keys & mask).astype(np.intp), values


def _votes_to_close(
    closing: _Closing, gaps: FloatMatrix, columns: IndexMatrix, per_vote: Float32Matrix
) -> list[int | None]:
    """Per row: the fewest votes, most closing first, whose closings sum to at least its gap
    (None when all of them do not; 0 for a gap <= 0). The first ``_HEAD`` cells of a row
    usually do; the rows they do not are counted again over all their cells."""
    rows = np.arange(gaps.size)
    out = _count(closing, gaps, rows, columns[:, :_HEAD], per_vote[:, :_HEAD])
    again = [r for r, n in enumerate(out) if n is None and gaps[r] > 0.0]
    if again and columns.shape[1] > _HEAD:
        more = _count(closing, gaps[again], rows[again], columns[again], per_vote[again])
        for r, n in zip(again, more, strict=True):
            out[r] = n
    return out


def _count(closing: _Closing, gaps: FloatMatrix, rows: IndexMatrix, columns: IndexMatrix,
           per_vote: Float32Matrix) -> list[int | None]:
    n = closing.votes(rows[:, None], columns)
    each = per_vote.astype(np.float64)
    closed = np.cumsum(n * each, axis=1)
    taken = np.cumsum(n, axis=1)
    width = closed.shape[1]
    full = np.minimum((closed < gaps[:, None]).sum(axis=1), width - 1)  # cells taken whole
    at = np.arange(gaps.size)
    before = np.where(full > 0, closed[at, full - 1], 0.0)
    already = np.where(full > 0, taken[at, full - 1], 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        part = np.ceil((gaps - before) / each[at, full] * (1.0 - 1e-9))
    out: list[int | None] = []
    for gap, total, whole, extra in zip(gaps.tolist(), closed[:, -1].tolist(), already.tolist(),
                                        part.tolist(), strict=True):
        if not gap > 0.0:
            out.append(0 if gap <= 0.0 else None)  # NaN: no margin
        elif not total >= gap:
            out.append(None)
        else:
            out.append(int(whole) + max(int(extra), 1))
    return out
