"""The board as a list of played pairs: the arrays the solver and the CIs work on."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from services.rating.engine.counts import FloatMatrix, PairCounts

FloatVector = NDArray[np.float64]
IndexVector = NDArray[np.intp]


def propensity_weights(
    battles: NDArray[np.int64], reweighted: bool, min_pair_count: int
) -> FloatMatrix:
    """Per-battle weight of each pair, as arena-rank's ``PairDataset.from_pandas``.

    Reweighted: ``1 / max(n_ij, min_pair_count)`` where ``n_ij`` counts every battle
    between i and j (both side orders, every outcome); otherwise 1.
    """
    if not reweighted:
        return np.ones(battles.shape, dtype=np.float64)
    return 1.0 / np.maximum(battles.astype(np.float64), float(min_pair_count))


@dataclass(frozen=True, slots=True)
class PairData:
    """Played pairs ``(i[k], j[k])`` with ``i < j``; counts are raw, ``weight`` per battle."""

    size: int
    i: IndexVector
    j: IndexVector
    wins_i: FloatVector
    wins_j: FloatVector
    ties: FloatVector
    weight: FloatVector

    @property
    def battles(self) -> FloatVector:
        return self.wins_i + self.wins_j + self.ties

    @property
    def weighted_battles(self) -> FloatVector:
        return self.weight * self.battles

    @property
    def weighted_score_i(self) -> FloatVector:
        """Weighted points of i against j: a win is 1, a tie is 1/2."""
        return self.weight * (self.wins_i + 0.5 * self.ties)

    @property
    def total_battles(self) -> float:
        return float(self.battles.sum())

    @property
    def total_weight(self) -> float:
        return float(self.weighted_battles.sum())

    @classmethod
    def from_matrices(
        cls, wins: NDArray[np.int64], ties: NDArray[np.int64], weight: FloatMatrix
    ) -> PairData:
        """``wins[i, j]``: i beat j; ``ties`` symmetric; ``weight`` symmetric per battle."""
        battles = wins + wins.T + ties
        i, j = np.nonzero(np.triu(battles, k=1))
        return cls(
            size=wins.shape[0],
            i=i.astype(np.intp),
            j=j.astype(np.intp),
            wins_i=wins[i, j].astype(np.float64),
            wins_j=wins[j, i].astype(np.float64),
            ties=ties[i, j].astype(np.float64),
            weight=weight[i, j].astype(np.float64),
        )

    @classmethod
    def from_counts(cls, counts: PairCounts, reweighted: bool, min_pair_count: int) -> PairData:
        weight = propensity_weights(counts.battles(), reweighted, min_pair_count)
        return cls.from_matrices(counts.wins(), counts.ties(), weight)

    def laplacian(self, values: FloatVector, ridge: float) -> FloatMatrix:
        """``sum_k values[k] (e_i - e_j)(e_i - e_j)^T + ridge * I`` as a dense matrix."""
        m = self.size
        out = np.zeros((m, m), dtype=np.float64)
        flat = out.reshape(-1)
        flat[self.i * m + self.j] = -values
        flat[self.j * m + self.i] = -values
        flat[:: m + 1] = self._sum_at(self.i, values) + self._sum_at(self.j, values) + ridge
        return out

    def scatter(self, values: FloatVector) -> FloatVector:
        """``sum_k values[k] (e_i - e_j)``."""
        return self._sum_at(self.i, values) - self._sum_at(self.j, values)

    def _sum_at(self, index: IndexVector, values: FloatVector) -> FloatVector:
        return np.asarray(np.bincount(index, weights=values, minlength=self.size), np.float64)
