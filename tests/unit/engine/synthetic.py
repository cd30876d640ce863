"""Synthetic arena battles for the engine tests and the benchmark (one generator, shared)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

import numpy as np

from services.rating.engine import OUTCOMES, PairCounts

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
