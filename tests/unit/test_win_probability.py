"""The screen's win probability (WinProbabilities, from the arena's overall fit
kept as plain lists) is the one computed from the fit's numpy arrays, bit for bit, and follows
refits."""

from __future__ import annotations

import math
import random

from services.rating.engine import FitOptions
from services.rating.engine.board import BoardFit, fit_board
from services.rating.engine.counts import PairCounts
from services.rating.win_probability import WinProbabilities
from shared.keys import board_name


def random_fit(rng: random.Random, options: FitOptions) -> BoardFit:
    models = [f"model-{i:02d}" for i in range(12)]
    counts = PairCounts(models)
    for _ in range(4000):
        a, b = rng.sample(models, 2)
        if rng.random() < 0.9 and "model-11" in (a, b):
            continue  # a rarely seen model: preliminary
        counts.add(a, b, rng.choice(["model_a", "model_b", "tie", "tie_bothbad"]))
    return fit_board(counts, options)


def numpy_formula(fit: BoardFit, a_id: str, b_id: str) -> float | None:
    """The probability as it was computed from the fit's arrays."""
    try:
        a, b = fit.models.index(a_id), fit.models.index(b_id)
    except ValueError:
        return None
    if fit.preliminary[a] or fit.preliminary[b]:
        return None
    return 1.0 / (1.0 + math.exp(float(fit.theta[b] - fit.theta[a])))


def test_the_probability_of_the_fit_bit_for_bit() -> None:
    rng = random.Random(5)
    options = FitOptions(preliminary_votes=250)
    fits: dict[str, BoardFit] = {}  # board -> last fit, as the refits keep it
    win_probability = WinProbabilities(fits).of
    assert win_probability("text", "model-00", "model-01") is None  # no fit yet
    for _ in range(3):  # each refit replaces the fit: the probabilities follow it
        fit = fits[board_name("text", "overall")] = random_fit(rng, options)
        assert fit.preliminary.any() and not fit.preliminary.all()
        names = [*fit.models, "unknown"]
        for a in names:
            for b in names:
                if a != b:
                    assert win_probability("text", a, b) == numpy_formula(fit, a, b)
        assert win_probability("other", "model-00", "model-01") is None
