"""Online Elo, the secondary column: FastChat's ``compute_online_elo`` one vote at a time."""

from __future__ import annotations

from dataclasses import dataclass, field

from services.rating.engine.counts import OUTCOMES

_SCORE_A = {"model_a": 1.0, "model_b": 0.0, "tie": 0.5, "tie_bothbad": 0.5}


@dataclass(slots=True)
class EloState:
    """Elo ratings updated vote by vote; the result depends on vote order.

    Each vote moves A by ``k * (s_a - e_a)`` and B by ``k * (1 - s_a - e_b)``, with
    ``e_a = 1 / (1 + base ** ((r_b - r_a) / scale))``; unseen models start at ``init``.
    """

    k: float = 4.0
    scale: float = 400.0
    base: float = 10.0
    init: float = 1000.0
    ratings: dict[str, float] = field(default_factory=dict)

    def apply(self, model_a: str, model_b: str, outcome: str) -> None:
        if outcome not in _SCORE_A:
            raise ValueError(f"unknown outcome {outcome!r}; expected one of {OUTCOMES}")
        if model_a == model_b:
            raise ValueError(f"model {model_a!r} cannot battle itself")
        r_a = self.ratings.get(model_a, self.init)
        r_b = self.ratings.get(model_b, self.init)
        e_a = 1.0 / (1.0 + self.base ** ((r_b - r_a) / self.scale))
        e_b = 1.0 / (1.0 + self.base ** ((r_a - r_b) / self.scale))
        s_a = _SCORE_A[outcome]
        self.ratings[model_a] = r_a + self.k * (s_a - e_a)
        self.ratings[model_b] = r_b + self.k * (1.0 - s_a - e_b)
