"""The next-battle sampling read model: the contract between the rating worker, which builds a
board's pair probabilities after its refits (``services/rating/engine/sampling.py``), and the
api, which draws pairs from them (``GET /v1/arenas/{arena}/next-battle``).

Stored per board and policy at ``KeyLayout.sampling`` as one compact document: a JSON head line
(format, policy, models), then the pairs as little-endian arrays: float32 probabilities, uint16
index of each pair's first and second model (first < second), uint8 reason codes (9 bytes a
pair: ~400 kB at 300 models).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final, Literal

import numpy as np
import orjson
from numpy.typing import NDArray

Policy = Literal["uniform", "active"]
POLICIES: Final[tuple[Policy, ...]] = ("uniform", "active")
Reason = Literal["information_gain", "new_model_boost", "exploration_floor", "uniform"]
REASONS: Final[tuple[Reason, ...]] = (
    "information_gain", "new_model_boost", "exploration_floor", "uniform")
_FORMAT: Final = 1
FloatVector = NDArray[np.float64]


@dataclass(frozen=True, slots=True, eq=False)
class PairSampler:
    """Probability of each eligible pair ``(first[k], second[k])`` (indices into ``models``,
    first < second), with the reason it has that weight. Draw with :meth:`draw`."""

    models: tuple[str, ...]
    policy: Policy
    first: NDArray[np.intp]
    second: NDArray[np.intp]
    probability: FloatVector
    reason: NDArray[np.uint8]
    _cumulative: FloatVector = field(default_factory=lambda: np.zeros(0), repr=False)

    @property
    def pairs(self) -> int:
        return int(self.probability.size)

    def model_shares(self) -> FloatVector:
        """Each model's expected share of appearances (sums to 1 over the models)."""
        m = len(self.models)
        share = (np.bincount(self.first, self.probability, m)
                 + np.bincount(self.second, self.probability, m)) / 2.0
        return np.asarray(share, dtype=np.float64)

    def draw(self, n: int, rng: np.random.Generator) -> list[tuple[int, int, Reason, float]]:
        """``n`` pairs drawn independently (with replacement): (first, second, reason,
        probability) each."""
        if self.pairs == 0 or n <= 0:
            return []
        cumulative = self._cumulative
        if cumulative.size != self.pairs:  # computed once, on the first draw
            cumulative = np.cumsum(self.probability)
            object.__setattr__(self, "_cumulative", cumulative)
        picks = np.searchsorted(cumulative, rng.random(n) * cumulative[-1], side="right")
        picks = np.minimum(picks, self.pairs - 1)
        return [(int(self.first[k]), int(self.second[k]), REASONS[int(self.reason[k])],
                 float(self.probability[k])) for k in picks.tolist()]

    def encode(self) -> bytes:
        """A compact document: a JSON head line, then the pairs as binary arrays (float32
        probabilities, uint16 indices, uint8 reasons): 9 bytes a pair."""
        head = orjson.dumps({"format": _FORMAT, "policy": self.policy,
                             "models": list(self.models), "pairs": self.pairs})
        return b"".join((head, b"\n", self.probability.astype("<f4").tobytes(),
                         self.first.astype("<u2").tobytes(), self.second.astype("<u2").tobytes(),
                         self.reason.astype(np.uint8).tobytes()))

    @classmethod
    def decode(cls, raw: bytes) -> PairSampler:
        head_raw, sep, body = raw.partition(b"\n")
        head = orjson.loads(head_raw)
        if not sep or head.get("format") != _FORMAT or head.get("policy") not in POLICIES:
            raise ValueError("not a pair sampler document of this format")
        p = int(head["pairs"])
        if len(body) != 9 * p:
            raise ValueError(f"pair sampler body has {len(body)} bytes, expected {9 * p}")
        prob = np.frombuffer(body, "<f4", p, 0).astype(np.float64)
        first = np.frombuffer(body, "<u2", p, 4 * p).astype(np.intp)
        second = np.frombuffer(body, "<u2", p, 6 * p).astype(np.intp)
        reason = np.frombuffer(body, np.uint8, p, 8 * p).copy()
        return cls(tuple(head["models"]), head["policy"], first, second, prob, reason)
