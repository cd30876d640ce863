"""Podium's pure rating engine: Bradley-Terry standings from vote counts, and style-controlled
standings (contextual Bradley-Terry) from individual battles.

numpy/scipy only; no I/O, settings or clock. Reproduces LMArena's ``arena-rank``
(``BradleyTerry``, sandwich CIs) from counts of (model_a, model_b, outcome) triples.
"""

from services.rating.engine.battles import BattleColumns
from services.rating.engine.board import BoardFit, fit_board, rank_upper_bound
from services.rating.engine.bootstrap import (
    bootstrap_ci,
    bootstrap_ci_from_resamples,
    resample_counts,
)
from services.rating.engine.contextual import (
    ContextualFit,
    StyleCoefficient,
    StyleOptions,
    fit_contextual,
)
from services.rating.engine.counts import OUTCOMES, Outcome, PairCounts
from services.rating.engine.elo import EloState
from services.rating.engine.matrices import predicted_win_matrix, win_rate_matrix
from services.rating.engine.options import FitOptions
from services.rating.engine.robustness import AdverseVotes, adverse_votes, rank_margins
from services.rating.engine.scored import models_with_a_score
from services.rating.engine.style import STYLE_FEATURES, style_features_from_text

__all__ = [
    "OUTCOMES",
    "STYLE_FEATURES",
    "AdverseVotes",
    "BattleColumns",
    "BoardFit",
    "ContextualFit",
    "EloState",
    "FitOptions",
    "Outcome",
    "PairCounts",
    "StyleCoefficient",
    "StyleOptions",
    "adverse_votes",
    "bootstrap_ci",
    "bootstrap_ci_from_resamples",
    "fit_board",
    "fit_contextual",
    "models_with_a_score",
    "predicted_win_matrix",
    "rank_margins",
    "rank_upper_bound",
    "resample_counts",
    "style_features_from_text",
    "win_rate_matrix",
]
