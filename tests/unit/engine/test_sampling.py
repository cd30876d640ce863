"""The next-battle sampler (services/rating/engine/sampling.py): pure math, no services."""

from __future__ import annotations

import numpy as np
import pytest

from services.rating.engine import FitOptions, PairCounts, fit_board
from services.rating.engine.sampling import (
    BoardState,
    PairSampler,
    SamplingOptions,
    active_gain,
    build_sampler,
)


def _board(m: int = 12, per_pair: int = 40, seed: int = 0, spread: float = 1.0
           ) -> tuple[PairCounts, np.ndarray]:
    """Every pair played ``per_pair`` times under true strengths, best model first."""
    rng = np.random.default_rng(seed)
    theta = np.sort(rng.normal(0.0, spread, m))[::-1]
    names = [f"m{k:02d}" for k in range(m)]
    cells = np.zeros((4, m, m), np.int64)
    i, j = np.triu_indices(m, 1)
    wins = rng.binomial(per_pair, 1.0 / (1.0 + np.exp(-(theta[i] - theta[j]))))
    cells[0, i, j], cells[1, i, j] = wins, per_pair - wins
    counts = PairCounts(names, cells)
    return counts, fit_board(counts, FitOptions()).theta


def _state(counts: PairCounts, theta: np.ndarray, **kwargs: object) -> BoardState:
    return BoardState.of(counts, theta, **kwargs)  # type: ignore[arg-type]


NO_BOOST = SamplingOptions(new_model_boost=1.0)


@pytest.mark.parametrize("policy", ["uniform", "active"])
def test_probabilities_cover_every_pair_and_sum_to_one(policy: str) -> None:
    counts, theta = _board()
    sampler = build_sampler(_state(counts, theta), policy, NO_BOOST)  # type: ignore[arg-type]
    assert sampler.pairs == 12 * 11 // 2
    assert sampler.probability.sum() == pytest.approx(1.0)
    assert (sampler.first < sampler.second).all()


def test_uniform_is_uniform() -> None:
    counts, theta = _board()
    sampler = build_sampler(_state(counts, theta), "uniform", NO_BOOST)
    assert np.allclose(sampler.probability, 1.0 / sampler.pairs)
    assert {int(r) for r in sampler.reason} == {3}  # "uniform"


def test_exploration_floor_holds_for_every_pair() -> None:
    counts, theta = _board(m=30, spread=2.0)
    options = SamplingOptions(floor=0.2, new_model_boost=1.0)
    sampler = build_sampler(_state(counts, theta), "active", options)
    assert sampler.probability.min() >= 0.2 / sampler.pairs * (1 - 1e-12)
    shares = sampler.model_shares()
    assert shares.min() >= 0.2 / 30 * (1 - 1e-12)  # every model keeps its floor share


def test_active_spends_votes_on_the_uncertain_top() -> None:
    """Close models at the top, the rest far below: the top pairs get most of the mass."""
    counts, _ = _board(m=20, per_pair=30)
    theta = np.concatenate([[2.0, 1.98, 1.96], np.linspace(-1.0, -3.0, 17)])
    sampler = build_sampler(_state(counts, theta), "active",
                            SamplingOptions(floor=0.0, new_model_boost=1.0, top_k=3))
    top = (sampler.first < 3) & (sampler.second < 3)
    assert sampler.probability[top].sum() > 0.5  # 3 of 190 pairs
    best = int(np.argmax(sampler.probability))
    assert (sampler.first[best], sampler.second[best]) in {(0, 1), (1, 2), (0, 2)}
    assert sampler.reason[best] == 0  # information_gain


def test_gain_is_symmetric_and_zero_on_the_diagonal() -> None:
    counts, theta = _board()
    gain = active_gain(_state(counts, theta), top_k=5)
    assert np.allclose(gain, gain.T)
    assert np.all(np.diag(gain) == 0.0)
    assert (gain >= 0.0).all()


def test_new_model_boost_weights_pairs_with_few_votes() -> None:
    counts, theta = _board(m=10, per_pair=40)  # 360 votes per model
    options = SamplingOptions(floor=0.0, new_model_boost=5.0, new_model_votes=100)
    state = _state(counts, theta)
    votes = state.votes.copy()
    votes[9] = 50  # the newcomer
    state = BoardState(state.models, state.theta, state.battles, votes, state.eligible,
                       state.organizations)
    sampler = build_sampler(state, "uniform", options)
    newcomer = sampler.second == 9
    ratio = sampler.probability[newcomer].mean() / sampler.probability[~newcomer].mean()
    assert ratio == pytest.approx(5.0)
    assert (sampler.reason[newcomer] == 1).all()  # new_model_boost


def test_deprecated_models_get_no_pair() -> None:
    counts, theta = _board(m=8)
    eligible = [True] * 8
    eligible[3] = False
    sampler = build_sampler(_state(counts, theta, eligible=eligible), "active", NO_BOOST)
    assert 3 not in set(sampler.first.tolist()) | set(sampler.second.tolist())
    assert sampler.pairs == 7 * 6 // 2
    assert sampler.model_shares()[3] == 0.0


def test_organization_share_is_capped() -> None:
    counts, theta = _board(m=20)
    orgs = {m: ("big" if k < 10 else f"small-{k}") for k, m in enumerate(counts.models)}
    options = SamplingOptions(floor=0.0, new_model_boost=1.0, org_cap=0.2)
    sampler = build_sampler(_state(counts, theta, organizations=orgs), "uniform", options)
    shares = sampler.model_shares()
    assert shares[:10].sum() == pytest.approx(0.2, abs=1e-6)  # ~0.47 uncapped


def test_fewer_than_two_eligible_models_gives_no_pairs() -> None:
    counts, theta = _board(m=3)
    sampler = build_sampler(_state(counts, theta, eligible=[True, False, False]), "active",
                            NO_BOOST)
    assert sampler.pairs == 0
    assert sampler.draw(5, np.random.default_rng(0)) == []


def test_encode_decode_round_trip_and_draws_follow_the_probabilities() -> None:
    counts, theta = _board(m=15, spread=2.0)
    sampler = build_sampler(_state(counts, theta), "active", SamplingOptions(floor=0.05))
    decoded = PairSampler.decode(sampler.encode())
    assert decoded.models == sampler.models and decoded.policy == "active"
    assert np.allclose(decoded.probability, sampler.probability, rtol=1e-6)
    assert (decoded.reason == sampler.reason).all()
    draws = decoded.draw(20_000, np.random.default_rng(1))
    index = {(int(a), int(b)): k for k, (a, b) in
             enumerate(zip(decoded.first, decoded.second, strict=True))}
    seen = np.bincount([index[(a, b)] for a, b, _, _ in draws], minlength=decoded.pairs)
    assert np.abs(seen / 20_000 - decoded.probability).max() < 0.02


@pytest.mark.parametrize("raw", [b"", b"{}\n", b'{"format":1,"policy":"active","models":[],'
                                 b'"pairs":2}\nabc'])
def test_decode_refuses_other_documents(raw: bytes) -> None:
    with pytest.raises(ValueError):
        PairSampler.decode(raw)


@pytest.mark.parametrize("kwargs", [{"floor": 1.5}, {"new_model_boost": 0.5},
                                    {"org_cap": 0.0}, {"top_k": 1}])
def test_options_refuse_nonsense(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        SamplingOptions(**kwargs)  # type: ignore[arg-type]
