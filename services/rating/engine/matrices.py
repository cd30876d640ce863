"""M x M views of a board, for pairwise win-rate plots."""

from __future__ import annotations

import numpy as np

from services.rating.engine.board import BoardFit
from services.rating.engine.counts import FloatMatrix, PairCounts


def win_rate_matrix(counts: PairCounts) -> FloatMatrix:
    """Observed ``(wins + ties / 2) / battles`` of row model i against column model j.

    NaN where the pair never played, including the diagonal.
    """
    battles = counts.battles().astype(np.float64)
    points = counts.wins() + 0.5 * counts.ties()
    rate = np.full(battles.shape, np.nan, dtype=np.float64)
    np.divide(points, battles, out=rate, where=battles > 0)
    return rate


def predicted_win_matrix(fit: BoardFit) -> FloatMatrix:
    """Bradley-Terry probability that row model i beats column model j (0.5 on the diagonal)."""
    diff = (fit.scores[:, None] - fit.scores[None, :]) / fit.options.scale
    exponent = np.clip(-diff * np.log(fit.options.base), -700.0, 700.0)
    prob: FloatMatrix = 1.0 / (1.0 + np.exp(exponent))
    return prob
