"""What the voter screen asks of the boards: a model's predicted chance against another."""

from __future__ import annotations

import math
from collections.abc import Mapping

from services.rating.engine import BoardFit
from shared.keys import board_name


class WinProbabilities:
    """P(model_a beats model_b) on an arena's overall board as last fitted (``fits``: board ->
    its last fit, as the refits keep it), from the fit kept as plain Python lists: the screen
    asks hundreds of times a batch."""

    def __init__(self, fits: Mapping[str, BoardFit]) -> None:
        self._fits = fits
        # per arena: the fit the lists were made from, model -> index, theta, preliminary
        self._inputs: dict[str, tuple[BoardFit, dict[str, int], list[float], list[bool]]] = {}

    def of(self, arena: str, model_a: str, model_b: str) -> float | None:
        """None (not judged) unless both models are past the preliminary stage: early estimates
        of a board with few votes are extreme, and would make honest upsets look like rigging."""
        fit = self._fits.get(board_name(arena, "overall"))
        if fit is None:
            return None
        inputs = self._inputs.get(arena)
        if inputs is None or inputs[0] is not fit:  # refitted since: the same values, as lists
            inputs = self._inputs[arena] = (
                fit, {model: i for i, model in enumerate(fit.models)},  # ids are unique
                fit.theta.tolist(), fit.preliminary.tolist())
        _, index, theta, preliminary = inputs
        a, b = index.get(model_a), index.get(model_b)
        if a is None or b is None or preliminary[a] or preliminary[b]:
            return None
        return 1.0 / (1.0 + math.exp(theta[b] - theta[a]))  # float64 as numpy's, bit for bit
