"""Rank robustness (engine.robustness): the first-order margin against exact refits, against a
naive computation over every vote, and on boards of every shape."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise

import numpy as np
import pytest
from hypothesis import given, settings
from scipy.special import expit

from services.rating.engine import (
    OUTCOMES,
    AdverseVotes,
    BoardFit,
    FitOptions,
    PairCounts,
    adverse_votes,
    fit_board,
    rank_margins,
)
from services.rating.engine.pairs import PairData
from tests.unit.engine.synthetic import Battle, counts_of, synthetic_battles, synthetic_counts
from tests.unit.engine.test_properties import OPTIONS, battle_lists

_CELLS_OF = {"win": (("model_a", False), ("model_b", True)),
             "loss": (("model_b", False), ("model_a", True)),
             "tie": (("tie", False), ("tie", True), ("tie_bothbad", False),
                     ("tie_bothbad", True))}


def _without(counts: PairCounts, votes: Sequence[AdverseVotes]) -> PairCounts:
    """``counts`` less the named votes (taken from whichever side and tie kind holds them)."""
    out = counts.copy()
    for group in votes:
        left = group.votes
        for outcome, flipped in _CELLS_OF[group.result]:
            a, b = (group.opponent, group.model) if flipped else (group.model, group.opponent)
            have = int(out.cells[OUTCOMES.index(outcome), out.index(a), out.index(b)])
            take = min(have, left)
            if take:
                out.add(a, b, outcome, -take)
                left -= take
        assert left == 0, group
    return out


def _one_by_one(votes: Sequence[AdverseVotes]) -> list[AdverseVotes]:
    return [AdverseVotes(g.model, g.opponent, g.result, 1, g.influence)
            for g in votes for _ in range(g.votes)]


def _exact_margin(counts: PairCounts, options: FitOptions, model: str, below: str,
                  votes: Sequence[AdverseVotes]) -> int | None:
    """The fewest of the named votes, in their order, whose removal makes an exact refit put
    ``below`` above ``model`` (bisection: the gap only shrinks as more of them go)."""
    single = _one_by_one(votes)

    def swapped(k: int) -> bool:
        fit = fit_board(_without(counts, single[:k]), options)
        return bool(fit.theta[counts.index(below)] > fit.theta[counts.index(model)])

    if not swapped(len(single)):
        return None
    low, high = 0, len(single)
    while low < high:
        mid = (low + high) // 2
        if swapped(mid):
            high = mid
        else:
            low = mid + 1
    return low


def _agreement(options: FitOptions, seeds: Sequence[int], spread: float = 0.3, skew: float = 0.5
               ) -> list[tuple[int, int]]:
    """(approximate, exact) margin of every adjacent pair of small boards."""
    pairs = []
    for seed in seeds:
        counts = counts_of(synthetic_battles(8, 3000, seed=seed, spread=spread, skew=skew))
        fit = fit_board(counts, options)
        order = [fit.models[k] for k in fit.order()]
        margins = rank_margins(counts, fit)
        assert margins[-1] is None
        for (model, below), margin in zip(pairwise(order), margins, strict=False):
            named = adverse_votes(counts, fit, model, below)
            assert margin is not None and sum(g.votes for g in named) == margin
            exact = _exact_margin(counts, options, model, below, named)
            assert exact is not None, "dropping the named votes swaps the pair"
            pairs.append((margin, exact))
    return pairs


def test_the_margin_agrees_with_exact_refits() -> None:
    """Dropping the k votes it names swaps the pair in an exact refit; the fewest of them that
    do are within 15% of k on these boards (0.9 on average), close and wide gaps alike."""
    pairs = _agreement(FitOptions(), seeds=range(3))
    pairs += _agreement(FitOptions(), seeds=range(3), spread=1.5, skew=0.0)
    for margin, exact in pairs:
        assert 0.6 * margin <= exact <= margin, pairs
    ratio = float(np.mean([exact / margin for margin, exact in pairs]))
    assert ratio > 0.9, pairs


def test_the_reweighted_margin_agrees_with_exact_refits() -> None:
    """arena-rank's reweighting: a pair's total weight stays 1 (its mean outcome moves instead).
    Dropping the named votes swaps the pair; first order overestimates more there (the mean
    moves as 1/(n - k)), within a factor of 2."""
    pairs = _agreement(FitOptions(reweighted=True, min_pair_count=20), seeds=range(3))
    for margin, exact in pairs:
        assert 0.5 * margin <= exact <= margin, pairs


def _naive_margins(counts: PairCounts, fit: BoardFit) -> list[int | None]:
    """The count from its definition, over every vote of the board (not only the two models'):
    an influence e_ab^T H^-1 g_i each, the coefficients of a's and b's votes averaged with those
    where a and b meet halfway (u scaled by their information ratio), most adverse first."""
    data = PairData.from_counts(counts, False, 1)
    p = expit(fit.theta[data.i] - fit.theta[data.j])
    hess_pinv = np.linalg.pinv(data.laplacian(data.battles * p * (1.0 - p), 0.0))
    order = fit.order()
    out: list[int | None] = []
    for a, b in pairwise(order):
        u = hess_pinv[a] - hess_pinv[b]
        move = u[data.i] - u[data.j]
        mid = 0.5 * (fit.theta[a] + fit.theta[b])
        theta_mid = fit.theta.copy()
        theta_mid[[a, b]] = mid
        p_mid = expit(theta_mid[data.i] - theta_mid[data.j])
        info, info_mid = data.battles * p * (1 - p), data.battles * p_mid * (1 - p_mid)
        scale = np.ones_like(p)
        for k in (b, a):  # the a-b pair's votes are a's
            of_k = (data.i == k) | (data.j == k)
            scale[of_k] = info[of_k].sum() / info_mid[of_k].sum()
        near = (data.i == a) | (data.j == a) | (data.i == b) | (data.j == b)
        coef = [np.where(near, 0.5 * ((p - y) + (p_mid - y) * scale), p - y)
                for y in (1.0, 0.0, 0.5)]
        influence = np.concatenate([move * c for c in coef])
        votes = np.concatenate((data.wins_i, data.wins_j, data.ties))
        sort = np.argsort(influence)
        closed = np.cumsum(influence[sort] * votes[sort])
        gap = fit.theta[a] - fit.theta[b]
        k = int(np.searchsorted(-closed, gap))
        before = closed[k - 1] if k else 0.0
        out.append(int(votes[sort][:k].sum() + np.ceil((gap + before) / -influence[sort][k])))
    return [*out, None]


@pytest.mark.parametrize(("n_models", "n_votes"), [(12, 20_000), (60, 400_000)])
def test_the_margin_is_the_count_over_every_vote(n_models: int, n_votes: int
                                                             ) -> None:
    """The votes of the two models are the ones that matter (a vote between two others moves
    their gap ~M times less): the count over them alone is the count over every vote within
    2% (and a vote of rounding: the sort keys are float32)."""
    counts = synthetic_counts(n_models, n_votes, seed=1)
    fit = fit_board(counts)
    margins = rank_margins(counts, fit)
    naive = _naive_margins(counts, fit)
    for got, want in zip(margins[:-1], naive[:-1], strict=True):
        assert got is not None and want is not None
        assert abs(got - want) <= max(1, 0.02 * want), (margins, naive)


def test_a_lopsided_pair_has_a_large_margin_and_a_close_one_a_small_one() -> None:
    counts = PairCounts.from_triples({
        ("strong", "weak", "model_a"): 900, ("strong", "weak", "model_b"): 100,
        ("close-1", "close-2", "model_a"): 501, ("close-1", "close-2", "model_b"): 499,
        ("strong", "close-1", "model_a"): 300, ("close-1", "strong", "model_a"): 100,
        ("strong", "close-2", "model_a"): 300, ("close-2", "strong", "model_a"): 100,
        ("close-1", "weak", "model_a"): 300, ("weak", "close-1", "model_a"): 100,
        ("close-2", "weak", "model_a"): 300, ("weak", "close-2", "model_a"): 100,
    })
    fit = fit_board(counts)
    order = [fit.models[k] for k in fit.order()]
    assert order[0] == "strong" and order[-1] == "weak"
    margins = rank_margins(counts, fit)
    assert margins[0] is not None and margins[0] > 100
    assert margins[1] is not None and margins[1] <= 3  # close-1 over close-2 by 2 wins
    assert margins[2] is not None and margins[2] > 100
    assert margins[3] is None


def test_equal_models_have_a_margin_of_zero() -> None:
    counts = PairCounts.from_triples({("a", "b", "model_a"): 10, ("b", "a", "model_a"): 10})
    assert rank_margins(counts, fit_board(counts)) == [0, None]


@pytest.mark.parametrize("counts", [
    PairCounts(),
    PairCounts(["only"]),
    PairCounts.from_triples({("a", "b", "model_a"): 5}, models=["idle"]),  # unbeaten, unplayed
    PairCounts.from_triples({("a", "b", "model_a"): 5, ("b", "a", "tie"): 1,
                             ("c", "d", "model_b"): 7}),  # two disconnected components
])
def test_any_board_gets_a_margin_per_row(counts: PairCounts) -> None:
    fit = fit_board(counts)
    margins = rank_margins(counts, fit)
    assert len(margins) == len(counts)
    if margins:
        assert margins[-1] is None
    assert all(m is None or (isinstance(m, int) and m >= 0) for m in margins)
    assert all(m is None or m <= counts.total for m in margins)


@settings(max_examples=150, deadline=None)
@given(battles=battle_lists(min_size=0), options=OPTIONS)
def test_any_board_gets_margins_that_are_counts_or_none(battles: list[Battle],
                                                        options: FitOptions) -> None:
    """Whatever the board (unbeaten models, one-sided pairs, disconnected, reweighted): one
    margin per row, none raised, each a count of at most the two models' votes, or None; the
    votes :func:`adverse_votes` names add up to it."""
    counts = counts_of(battles)
    fit = fit_board(counts, options)
    margins = rank_margins(counts, fit)
    assert len(margins) == len(counts)
    order = [fit.models[k] for k in fit.order()]
    battles_of = dict(zip(fit.models, fit.votes.tolist(), strict=True))
    for (model, below), margin in zip(pairwise(order), margins, strict=False):
        if margin is None:
            continue
        assert isinstance(margin, int) and 0 <= margin <= battles_of[model] + battles_of[below]
        named = adverse_votes(counts, fit, model, below)
        assert sum(group.votes for group in named) == margin
