"""Fit options, with arena-rank's defaults."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class FitOptions:
    """How to fit a board.

    Defaults reproduce ``arena_rank.models.bradley_terry.BradleyTerry`` (arena-rank 0.1.1):
    score = ``scale * theta / ln(base) + init_rating`` with theta centred at mean 0, ties
    count half a win for each side, sandwich CIs with a ridge of ``hessian_reg`` on the
    Hessian diagonal (times the total vote count when not reweighted, exactly as arena-rank).

    ``l2`` is Podium's own addition, absent from arena-rank: a ridge penalty
    ``l2 * W / 2 * ||theta||^2`` on the negative log-likelihood, where W is the total
    (weighted) vote count. It keeps every fit finite and unique (a model that never lost,
    a disconnected board, a model without votes: an unbeaten model lands a few thousand
    points up, not at infinity). Its bias on theta is about ``l2 * W / h`` relative, h being
    the smallest non-zero eigenvalue of the Fisher information (~ votes of the least-voted
    model / 5): with 1e-10 that is < 0.002 rating points on a 300-model, 10M-vote board
    (1e-8 would already cost 0.18 points there).

    ``tol`` is the largest Newton step (in theta, natural-log units) that counts as
    converged; the error after such a step is O(tol^2). 1e-7 is 2e-5 rating points.
    """

    reweighted: bool = False
    min_pair_count: int = 50
    anchor_model: str | None = None
    anchor_score: float = 1000.0
    scale: float = 400.0
    base: float = 10.0
    init_rating: float = 1000.0
    preliminary_votes: int = 300
    ci_level: float = 0.95
    tol: float = 1e-7
    max_iter: int = 100
    l2: float = 1e-10
    hessian_reg: float = 1e-5

    def __post_init__(self) -> None:
        if not 0.0 < self.ci_level < 1.0:
            raise ValueError(f"ci_level must be in (0, 1), got {self.ci_level}")
        if not (self.base > 1.0 and math.isfinite(self.base)):
            raise ValueError(f"base must be finite and > 1, got {self.base}")
        if not (self.scale > 0.0 and math.isfinite(self.scale)):
            raise ValueError(f"scale must be positive and finite, got {self.scale}")
        if self.min_pair_count < 1:
            raise ValueError(f"min_pair_count must be >= 1, got {self.min_pair_count}")
        if self.max_iter < 1:
            raise ValueError(f"max_iter must be >= 1, got {self.max_iter}")
        if not self.tol > 0.0:
            raise ValueError(f"tol must be positive, got {self.tol}")
        if not (self.l2 > 0.0 and math.isfinite(self.l2)):
            raise ValueError(f"l2 must be positive and finite, got {self.l2}")
        if self.hessian_reg < 0.0:
            raise ValueError(f"hessian_reg must be >= 0, got {self.hessian_reg}")
        if not (math.isfinite(self.anchor_score) and math.isfinite(self.init_rating)):
            raise ValueError("anchor_score and init_rating must be finite")

    @property
    def alpha(self) -> float:
        """Rating points per unit of theta: ``scale / ln(base)``."""
        return self.scale / math.log(self.base)
