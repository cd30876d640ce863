"""Synthetic arena battles for the engine tests and the benchmark (one generator, shared)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from services.rating.engine import OUTCOMES, BattleColumns, BoardFit, PairCounts
from services.rating.engine.style import normalised_style
from services.rating.standings import standings_rows

Battle = tuple[str, str, str]


def model_names(n: int) -> list[str]:
    return [f"model-{k:03d}" for k in range(n)]


def synthetic_battles(
    n_models: int = 20,
    n_battles: int = 4000,
    seed: int = 0,
    tie_rate: float = 0.15,
    spread: float = 1.0,
    skew: float = 0.0,
) -> list[Battle]:
    """Bradley-Terry battles between random distinct pairs, with ties and both-bad ties.

    Strengths are normal with standard deviation ``spread`` (natural-log units). Models are
    drawn with probability proportional to ``exp(skew * normal)``: with ``skew`` > 0 some
    pairs are played far more than others (which is what reweighting is for).
    """
    rng = np.random.default_rng(seed)
    names = model_names(n_models)
    strength = rng.normal(0.0, spread, n_models)
    popularity = np.exp(skew * rng.normal(size=n_models))
    popularity /= popularity.sum()
    a = rng.choice(n_models, n_battles, p=popularity)
    b = rng.choice(n_models, n_battles, p=popularity)
    while (same := a == b).any():
        b[same] = rng.choice(n_models, int(same.sum()), p=popularity)
    p_a = 1.0 / (1.0 + np.exp(-(strength[a] - strength[b])))
    u = rng.random(n_battles)
    tie = rng.random(n_battles) < tie_rate
    both_bad = rng.random(n_battles) < 0.3
    outcome = np.where(u < p_a, 0, 1)
    outcome = np.where(tie, np.where(both_bad, 3, 2), outcome)
    return [
        (names[i], names[j], OUTCOMES[k])
        for i, j, k in zip(a.tolist(), b.tolist(), outcome.tolist(), strict=True)
    ]


def rows_of(fit: BoardFit) -> list[dict[str, Any]]:
    """The fit's standings rows as the worker writes them (without Elo), as plain dicts."""
    return standings_rows(fit)


def triples_of(battles: Iterable[Battle]) -> dict[Battle, int]:
    return dict(Counter(battles))


def counts_of(battles: Sequence[Battle]) -> PairCounts:
    return PairCounts.from_triples(triples_of(battles))


def synthetic_counts(
    n_models: int = 300, n_votes: int = 10_000_000, seed: int = 0, tie_rate: float = 0.15
) -> PairCounts:
    """A large board drawn directly as counts (no per-battle list): for benchmarks.

    Pairs are drawn with skewed popularity; outcomes follow Bradley-Terry with ties.
    """
    rng = np.random.default_rng(seed)
    strength = rng.normal(0.0, 1.0, n_models)
    popularity = np.exp(rng.normal(size=n_models))
    pair_p = np.outer(popularity, popularity)
    np.fill_diagonal(pair_p, 0.0)
    per_pair = rng.multinomial(n_votes, (pair_p / pair_p.sum()).reshape(-1)).reshape(pair_p.shape)
    p_a = 1.0 / (1.0 + np.exp(-(strength[:, None] - strength[None, :])))
    probs = np.stack(
        [p_a * (1 - tie_rate), (1 - p_a) * (1 - tie_rate), np.full_like(p_a, tie_rate * 0.7)]
    )
    probs = np.concatenate([probs, np.full((1, *p_a.shape), tie_rate * 0.3)])
    cells = np.zeros((len(OUTCOMES), n_models, n_models), dtype=np.int64)
    a, b = np.nonzero(per_pair)
    for k in range(len(OUTCOMES)):
        # binomial chain: the k-th outcome among the battles not yet assigned
        rest = per_pair[a, b] - cells[:k, a, b].sum(axis=0)
        share = probs[k, a, b] / np.maximum(probs[k:, a, b].sum(axis=0), 1e-300)
        cells[k, a, b] = rng.binomial(rest, np.clip(share, 0.0, 1.0))
    return PairCounts(model_names(n_models), cells)


TRUE_STYLE_BETA = (0.35, 0.08, 0.12, 0.10)  # tokens, headers, lists, bold (logit per std)


def synthetic_style_battles(
    n_models: int = 20,
    n_battles: int = 20_000,
    seed: int = 0,
    beta: Sequence[float] = TRUE_STYLE_BETA,
    tie_rate: float = 0.15,
    skew: float = 0.5,
    strength: Sequence[float] | None = None,
    verbosity: Sequence[float] | None = None,
) -> BattleColumns:
    """Battles whose outcome follows contextual Bradley-Terry with LMArena's style features.

    Each model has a strength (normal, sd 0.6 unless given), a verbosity (log-scale shift of
    its answer length, normal sd 0.4 unless given) and its own markdown habits (Poisson rates
    of headers, list items, bold spans). The outcome logit is ``strength_a - strength_b +
    beta . x`` where x are the normalised style features of the battle (arena-rank's
    normalisation, so ``beta`` is what a fit should recover).
    """
    rng = np.random.default_rng(seed)
    s = rng.normal(0.0, 0.6, n_models) if strength is None else np.asarray(strength, float)
    v = rng.normal(0.0, 0.4, n_models) if verbosity is None else np.asarray(verbosity, float)
    rates = np.exp(rng.normal(np.log([2.0, 5.0, 3.0]), 0.7, (n_models, 3)))
    popularity = np.exp(skew * rng.normal(size=n_models))
    popularity /= popularity.sum()
    a = rng.choice(n_models, n_battles, p=popularity)
    b = rng.choice(n_models, n_battles, p=popularity)
    while (same := a == b).any():
        b[same] = rng.choice(n_models, int(same.sum()), p=popularity)

    def side(m: np.ndarray) -> np.ndarray:
        tokens = np.rint(np.exp(6.0 + v[m] + 0.5 * rng.normal(size=m.size)))
        # markdown scales with length: a longer answer has more room for structure
        scale = np.exp(v[m])[:, None]
        marks = rng.poisson(rates[m] * scale)
        return np.column_stack([tokens, marks]).astype(np.int32)

    style_a, style_b = side(a), side(b)
    x, _, _ = normalised_style(style_a, style_b)
    p_a = 1.0 / (1.0 + np.exp(-(s[a] - s[b] + x @ np.asarray(beta, float))))
    outcome = np.where(rng.random(n_battles) < p_a, 0, 1)
    tie = rng.random(n_battles) < tie_rate
    outcome = np.where(tie, np.where(rng.random(n_battles) < 0.3, 3, 2), outcome)
    block = BattleColumns(capacity=n_battles)
    block.extend_indexed(a, b, outcome, style_a, style_b, model_names(n_models))
    return block
