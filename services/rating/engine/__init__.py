"""Podium's pure rating engine: Bradley-Terry standings from vote counts.

numpy/scipy only; no I/O, settings or clock. Reproduces LMArena's ``arena-rank``
(``BradleyTerry``, sandwich CIs) from counts of (model_a, model_b, outcome) triples.
"""

from services.rating.engine.board import BoardFit, fit_board, rank_upper_bound
from services.rating.engine.bootstrap import (
    bootstrap_ci,
    bootstrap_ci_from_resamples,
    resample_counts,
)
from services.rating.engine.counts import OUTCOMES, Outcome, PairCounts
from services.rating.engine.elo import EloState
from services.rating.engine.matrices import predicted_win_matrix, win_rate_matrix
from services.rating.engine.options import FitOptions

__all__ = [
    "OUTCOMES",
    "BoardFit",
    "EloState",
    "FitOptions",
    "Outcome",
    "PairCounts",
    "bootstrap_ci",
    "bootstrap_ci_from_resamples",
    "fit_board",
    "predicted_win_matrix",
    "rank_upper_bound",
    "resample_counts",
    "win_rate_matrix",
]
