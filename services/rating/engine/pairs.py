"""The board as a list of played pairs: the arrays the solver and the CIs work on."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from services.rating.engine.counts import FloatMatrix, PairCounts

FloatVector = NDArray[np.float64]
IndexVector = NDArray[np.intp]
BoolVector = NDArray[np.bool_]
BoolMatrix = NDArray[np.bool_]


def _reaches_all(adjacency: BoolMatrix) -> bool:
    """Whether every node is reachable from node 0 (breadth-first, O(M^2) at worst)."""
    m = adjacency.shape[0]
    if m <= 1:
        return True
    seen = np.zeros(m, dtype=np.bool_)
    seen[0] = True
    frontier = np.zeros(1, dtype=np.intp)
    while frontier.size:
        reached = adjacency[frontier].any(axis=0) & ~seen
        seen |= reached
        if seen.all():  # a dense board is done after one step
            return True
        frontier = np.flatnonzero(reached)
    return bool(seen.all())


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
        cls,
        wins: NDArray[np.int64],
        ties: NDArray[np.int64],
        weight: FloatMatrix,
        battles: NDArray[np.int64] | None = None,
    ) -> PairData:
        """``wins[i, j]``: i beat j; ``ties`` symmetric; ``weight`` symmetric per battle."""
        m = wins.shape[0]
        if battles is None:
            battles = wins + wins.T + ties
        upper = np.flatnonzero(np.triu(battles, k=1))
        i, j = np.divmod(upper, m) if m else (upper, upper)
        lower = j * m + i
        return cls(
            size=m,
            i=i.astype(np.intp),
            j=j.astype(np.intp),
            wins_i=wins.reshape(-1)[upper].astype(np.float64),
            wins_j=wins.reshape(-1)[lower].astype(np.float64),
            ties=ties.reshape(-1)[upper].astype(np.float64),
            weight=weight.reshape(-1)[upper].astype(np.float64),
        )

    @classmethod
    def from_counts(cls, counts: PairCounts, reweighted: bool, min_pair_count: int) -> PairData:
        battles = counts.battles()
        weight = propensity_weights(battles, reweighted, min_pair_count)
        return cls.from_matrices(counts.wins(), counts.ties(), weight, battles)

    def is_connected(self) -> bool:
        """Whether the played pairs link every model (vacuously true for M <= 1)."""
        adjacency = self._adjacency(np.ones(self.i.size, bool), np.ones(self.i.size, bool))
        return _reaches_all(adjacency)

    def mle_exists(self) -> bool:
        """Whether the unpenalised maximum likelihood is finite (Zermelo's condition).

        True iff the graph with an edge i -> j whenever i beat or tied j is strongly
        connected (vacuously true for M <= 1).
        """
        adjacency = self._adjacency(self.wins_i + self.ties > 0, self.wins_j + self.ties > 0)
        return _reaches_all(adjacency) and _reaches_all(adjacency.T)

    def _adjacency(self, forward: BoolVector, backward: BoolVector) -> BoolMatrix:
        m = self.size
        adjacency = np.zeros((m, m), dtype=np.bool_)
        flat = adjacency.reshape(-1)
        flat[(self.i * m + self.j)[forward]] = True
        flat[(self.j * m + self.i)[backward]] = True
        return adjacency

    def laplacian(self, values: FloatVector, ridge: float) -> FloatMatrix:
        """``sum_k values[k] (e_i - e_j)(e_i - e_j)^T + ridge * I`` as a dense matrix."""
        m = self.size
        out = np.zeros((m, m), dtype=np.float64)
        flat = out.reshape(-1)
        flat[self.i * m + self.j] = -values
        flat[self.j * m + self.i] = -values
        flat[:: m + 1] = ridge - out.sum(axis=1)
        return out

    def scatter(self, values: FloatVector) -> FloatVector:
        """``sum_k values[k] (e_i - e_j)``."""
        return self._sum_at(self.i, values) - self._sum_at(self.j, values)

    def _sum_at(self, index: IndexVector, values: FloatVector) -> FloatVector:
        return np.asarray(np.bincount(index, weights=values, minlength=self.size), np.float64)
