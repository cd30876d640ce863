"""Synthetic votes from hidden Bradley-Terry strengths (for the demo, tests and benchmarks)."""

from __future__ import annotations

import math
import random
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

# Real-looking model names with a hidden true Arena-score-like strength.
DEMO_MODELS: dict[str, float] = {
    "gemini-3-pro": 1492,
    "grok-4.1-thinking": 1477,
    "claude-opus-4.5": 1470,
    "gpt-5.1-high": 1466,
    "qwen3.5-max-preview": 1461,
    "claude-sonnet-4.5": 1449,
    "deepseek-v3.2-exp": 1437,
    "kimi-k2-thinking": 1431,
    "glm-4.6": 1425,
    "gpt-5-mini": 1410,
    "qwen3-235b-a22b-instruct": 1404,
    "mistral-large-3": 1396,
    "gemini-2.5-flash": 1390,
    "longcat-flash-chat": 1383,
    "hunyuan-t1": 1377,
    "minimax-m2": 1372,
    "o4-mini": 1365,
    "llama-4-maverick": 1330,
    "gemma-3-27b-it": 1318,
    "command-a": 1302,
    "qwen3-30b-a3b": 1295,
    "phi-4": 1240,
    "mistral-small-3.2": 1262,
    "llama-3.3-70b-instruct": 1280,
    "granite-4.0-h-small": 1228,
    "olmo-3-32b": 1215,
    "jamba-1.7-large": 1205,
    "llama-3.1-8b-instruct": 1170,
    "gemma-3n-e4b": 1185,
    "smollm3-3b": 1100,
}
# Registry facts of the demo models: (organization, country, license). Illustrative only.
_ORGS: dict[str, tuple[str, str, str]] = {
    "gemini": ("Google", "US", "proprietary"), "gemma": ("Google", "US", "open"),
    "grok": ("xAI", "US", "proprietary"), "claude": ("Anthropic", "US", "proprietary"),
    "gpt": ("OpenAI", "US", "proprietary"), "o4": ("OpenAI", "US", "proprietary"),
    "qwen3.5": ("Alibaba", "CN", "proprietary"), "qwen3": ("Alibaba", "CN", "open"),
    "deepseek": ("DeepSeek", "CN", "open"), "kimi": ("Moonshot AI", "CN", "open"),
    "glm": ("Zhipu AI", "CN", "open"), "mistral": ("Mistral AI", "FR", "open"),
    "longcat": ("Meituan", "CN", "open"), "hunyuan": ("Tencent", "CN", "proprietary"),
    "minimax": ("MiniMax", "CN", "open"), "llama": ("Meta", "US", "open"),
    "command": ("Cohere", "CA", "open"), "phi": ("Microsoft", "US", "open"),
    "granite": ("IBM", "US", "open"), "olmo": ("Ai2", "US", "open"),
    "jamba": ("AI21 Labs", "IL", "open"), "smollm3": ("Hugging Face", "US", "open"),
}


def demo_model_info(model_id: str) -> dict[str, Any]:
    """A registry entry for a demo model (the admin endpoint's body)."""
    prefix = max((p for p in _ORGS if model_id.startswith(p)), key=len, default=None)
    org, country, lic = _ORGS[prefix] if prefix else (None, None, None)
    return {"id": model_id, "organization": org, "country": country, "license": lic,
            "preview": "preview" in model_id}


CATEGORIES = ("coding", "math", "hard_prompts", "creative_writing", "instruction_following")
LANGUAGES = (("en", 0.55), ("zh", 0.15), ("es", 0.08), ("de", 0.06), ("ja", 0.06), ("ru", 0.1))


@dataclass
class SyntheticArena:
    """Draws battles whose outcomes follow BT with the hidden strengths (plus ties)."""

    strengths: dict[str, float] = field(default_factory=lambda: dict(DEMO_MODELS))
    arena: str = "text"
    tie_rate: float = 0.15
    seed: int = 0
    categories: Sequence[str] = CATEGORIES
    languages: Sequence[tuple[str, float]] = LANGUAGES

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._models = sorted(self.strengths)
        # each category shifts strengths a little, so category boards differ from overall
        self._shift = {
            (c, m): self._rng.gauss(0, 15) for c in self.categories for m in self._models
        }

    def vote(self) -> dict[str, Any]:
        a, b = self._rng.sample(self._models, 2)
        return self.battle(a, b)

    def battle(self, a: str, b: str) -> dict[str, Any]:
        """A vote on the pair (a, b) (e.g. one that next-battle served)."""
        rng = self._rng
        cats = [c for c in self.categories if rng.random() < 0.25]
        # a model it does not know (served by next-battle, registered elsewhere): 1000, no shift
        sa = self.strengths.get(a, 1000.0) + sum(self._shift.get((c, a), 0.0) for c in cats)
        sb = self.strengths.get(b, 1000.0) + sum(self._shift.get((c, b), 0.0) for c in cats)
        p_a = 1.0 / (1.0 + math.pow(10.0, (sb - sa) / 400.0))
        r = rng.random()
        if r < self.tie_rate:
            winner = "tie" if rng.random() < 0.7 else "tie_bothbad"
        else:
            winner = "model_a" if rng.random() < p_a else "model_b"
        langs, weights = zip(*self.languages, strict=True)
        return {
            "vote_id": str(uuid.UUID(int=rng.getrandbits(128))),
            "arena": self.arena,
            "model_a": a,
            "model_b": b,
            "winner": winner,
            "categories": cats,
            "language": rng.choices(langs, weights)[0],
            "turns": 1 + int(rng.random() < 0.2),
            "anonymous": True,
            "voter": f"voter-{rng.randrange(5000)}",
        }

    def votes(self, n: int) -> Iterator[dict[str, Any]]:
        for _ in range(n):
            yield self.vote()
