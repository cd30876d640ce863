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
as 1/h). On small boards an exact refit without the votes named then swaps the pair after
0.66-1.0x of the count, 0.93x on average (reweighted: 0.26-1.0x, 0.74x; the count leans high;
tests/unit/engine/test_robustness.py, docs/decisions.md).

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
from typing import Any, Final, Literal

import numpy as np
from numpy.typing import NDArray
from scipy.linalg.lapack import dpotrf, dpotri
from scipy.special import expit

from services.rating.engine.board import BoardFit
from services.rating.engine.counts import FloatMatrix, IntMatrix, PairCounts
from services.rating.engine.newton import solve_linear

Result = Literal["win", "loss", "tie"]
# the cell kinds of a row, in column-block order: (whose vote: 0 a's, 1 b's; its result)
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
    return [*_votes_to_close(closing, gaps), None]


def adverse_votes(counts: PairCounts, fit: BoardFit, model: str, below: str) -> list[AdverseVotes]:
    """The votes :func:`rank_margins` would drop to put ``below`` above ``model``, most closing
    first (the last cell only as far as needed); empty when the gap cannot be closed."""
    a, b = counts.index(model), counts.index(below)
    closing = _closing(counts, fit, np.array([a], np.intp), np.array([b], np.intp))
    needed = _votes_to_close(closing, fit.theta[[a]] - fit.theta[[b]])[0]
    columns, per_vote = _descending(closing.per_vote, closing.per_vote.shape[1])
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
    theta = fit.theta
    p = expit(theta[:, None] - theta[None, :])
    info = p * (1.0 - p)
    n = battles.astype(np.float64)
    weighted = n / np.maximum(n, float(options.min_pair_count)) if options.reweighted else n
    # the per-row work below is (R, M) arrays: in float32 (half the memory traffic; the counts
    # do not need more than its 7 digits)
    u = _gap_directions(weighted, info, options.l2, top, below).astype(np.float32)
    theta32, p32, weighted32 = (x.astype(np.float32) for x in (theta, p, weighted))
    rows = np.arange(top.size)
    # a's vote against x moves the gap by c (u_a - u_x), b's by c (u_b - u_x); c of a vote of a
    # (b) is the mean of c at the fit and where a and b meet halfway (the trapezoid rule along
    # the path), times there the ratio s of a's (b's) information at the fit to halfway
    half_a = np.float32(0.5) * (u[rows, top][:, None] - u)  # (u_a - u_x) / 2 >= 0
    half_b = np.float32(0.5) * (u[rows, below][:, None] - u)  # (u_b - u_x) / 2 <= 0
    p_mid = expit((np.float32(0.5) * (theta32[top] + theta32[below]))[:, None] - theta32)
    p_mid[rows, top] = p_mid[rows, below] = 0.5
    information = (weighted * info).sum(axis=1)
    info_mid = p_mid * (np.float32(1.0) - p_mid)
    scale_a = _ratio(information[top], (weighted32[top] * info_mid).sum(axis=1))[:, None]
    scale_b = _ratio(information[below], (weighted32[below] * info_mid).sum(axis=1))[:, None]
    scale_a, scale_b = scale_a.astype(np.float32), scale_b.astype(np.float32)
    sum_a, sum_b = p_mid * scale_a, p_mid * scale_b
    sum_a += p32[top]  # p_ax + s_a p_mid_x: twice the mean p, the constants of c apart
    sum_b += p32[below]
    m = p.shape[0]
    per_vote = np.empty((top.size, 4 * m), dtype=np.float32)
    blocks = [per_vote[:, k * m:(k + 1) * m] for k in range(4)]
    # c of a win: p - 1; of a tie: p - 1/2; of a loss: p (a unit weight; reweighted below).
    # Closing is minus the gap's change: -(c_fit + s c_mid) / 2 (u_first - u_x).
    np.multiply((1.0 + scale_a) - sum_a, half_a, out=blocks[0], casting="same_kind")
    np.multiply(0.5 * (1.0 + scale_a) - sum_a, half_a, out=blocks[1], casting="same_kind")
    np.multiply(sum_b, half_b, out=blocks[2], casting="same_kind")
    np.negative(blocks[2], out=blocks[2])
    np.multiply(0.5 * (1.0 + scale_b) - sum_b, half_b, out=blocks[3], casting="same_kind")
    if options.reweighted:
        _reweight(blocks, n, wins, ties, options.min_pair_count, (top, below), (half_a, half_b))
    np.maximum(per_vote, 0.0, out=per_vote)
    return _Closing(top, below, per_vote, wins, ties)


def _reweight(blocks: list[Float32Matrix], n: FloatMatrix, wins: IntMatrix, ties: IntMatrix,
              min_pair_count: int, firsts: tuple[IndexMatrix, IndexMatrix],
              halves: tuple[NDArray[np.floating[Any]], NDArray[np.floating[Any]]]) -> None:
    """arena-rank's reweighting: a vote weighs 1/max(n, min_pair_count). A pair at most at the
    floor keeps that fixed weight (its blocks are scaled by it); above it, the pair's total
    weight stays 1 whatever is dropped and only its mean score s moves: c = (s - y) / n, the
    observed s (no path average: it is not the fit that moves it)."""
    weight = 1.0 / np.maximum(n, float(min_pair_count))
    free = n > min_pair_count
    mean = np.divide(wins + 0.5 * ties, n, out=np.zeros_like(n), where=free)
    for k, (side, score) in enumerate(((0, 1.0), (0, 0.5), (1, 0.0), (1, 0.5))):
        first, half = firsts[side], halves[side]
        at_fit = -2.0 * (mean[first] - score) * weight[first] * half  # 2 * half: u_first - u_x
        blocks[k][...] = np.where(free[first], at_fit, blocks[k] * weight[first])


def _ratio(at_fit: FloatMatrix, halfway: NDArray[np.floating]) -> FloatMatrix:
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


def _descending(per_vote: Float32Matrix, width: int) -> tuple[IndexMatrix, Float32Matrix]:
    """The ``width`` largest columns of each row, largest first, with their values. Sorted as
    int32 keys: the (non-negative) float32 value with the column index packed into its low
    mantissa bits, negated (an argsort of float64 was 3-5x slower); the values keep 23 - bits
    bits (~0.05% at 300 models), and cells within that of each other are in any order: not a
    vote's difference to the count. Fewer than all columns: a partition, then a sort of those."""
    columns = per_vote.shape[1]
    width = min(width, columns)
    bits = max(1, (columns - 1).bit_length())
    if bits > _INDEX_BITS_MAX:
        order: IndexMatrix = np.argsort(-per_vote, axis=1, kind="stable")[:, :width]
        return order, np.take_along_axis(per_vote, order, axis=1)
    mask = np.int32((1 << bits) - 1)
    keys = per_vote.view(np.int32) & ~mask  # non-negative floats sort as their bits
    keys |= np.arange(columns, dtype=np.int32)
    np.negative(keys, out=keys)
    if width < columns:
        keys = np.partition(keys, width - 1, axis=1)[:, :width]
    keys.sort(axis=1)
    np.negative(keys, out=keys)
    values: Float32Matrix = (keys & ~mask).view(np.float32)
    return (keys & mask).astype(np.intp), values


def _votes_to_close(closing: _Closing, gaps: FloatMatrix) -> list[int | None]:
    """Per row: the fewest votes, most closing first, whose closings sum to at least its gap
    (None when all of them do not; 0 for a gap <= 0). The first ``_HEAD`` cells of a row
    usually do; the rows they do not are counted again over all their cells."""
    rows = np.arange(gaps.size)
    out = _count(closing, gaps, rows, *_descending(closing.per_vote, _HEAD))
    again = [r for r, n in enumerate(out) if n is None and gaps[r] > 0.0]
    columns = closing.per_vote.shape[1]
    if again and columns > _HEAD:
        more = _count(closing, gaps[again], rows[again],
                      *_descending(closing.per_vote[again], columns))
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
