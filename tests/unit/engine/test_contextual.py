"""The style-controlled (contextual Bradley-Terry) fit."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.rating.engine import (
    OUTCOMES,
    BattleColumns,
    FitOptions,
    StyleOptions,
    fit_board,
    fit_contextual,
)
from tests.unit.engine.synthetic import model_names, rows_of, synthetic_style_battles

SWAP = np.array([1, 0, 2, 3])  # outcome code seen from the other side
WEAK_REG = StyleOptions(reg=1e-6)


def _swapped(block: BattleColumns) -> BattleColumns:
    out = BattleColumns(block.features)
    out.extend_indexed(
        block.model_b,
        block.model_a,
        SWAP[block.outcome],
        block.style_b,
        block.style_a,
        block.models,
    )
    return out


def test_fit_converges_centred_with_board_rows() -> None:
    block = synthetic_style_battles(n_models=15, n_battles=8000, seed=2)
    fit = fit_contextual(block)
    board = fit.board
    assert board.converged and board.iterations <= 8
    assert board.models == tuple(sorted(block.models))
    assert abs(board.theta.mean()) < 1e-12
    assert np.all(board.ci_low < board.scores) and np.all(board.scores < board.ci_high)
    assert board.votes.sum() == 2 * len(block)
    assert fit.battles == len(block)
    rows = rows_of(fit.board)
    assert [r["rank"] for r in rows] == list(range(1, 16))
    assert set(fit.coefficients) == set(block.features)
    for c in fit.coefficients.values():
        assert c.ci_low < c.value < c.ci_high


def test_warm_start_reaches_the_same_fit_in_fewer_iterations() -> None:
    block = synthetic_style_battles(n_models=15, n_battles=8000, seed=2)
    cold = fit_contextual(block)
    more = synthetic_style_battles(n_models=15, n_battles=200, seed=9)
    block.extend(more)
    again = fit_contextual(block)
    warm = fit_contextual(block, warm_start=cold)
    assert warm.board.iterations < again.board.iterations
    np.testing.assert_allclose(warm.board.scores, again.board.scores, atol=1e-4)
    np.testing.assert_allclose(warm.beta, again.beta, atol=1e-8)


def test_swapping_sides_changes_nothing() -> None:
    block = synthetic_style_battles(n_models=8, n_battles=3000, seed=4)
    fit, swapped = fit_contextual(block), fit_contextual(_swapped(block))
    np.testing.assert_allclose(fit.board.scores, swapped.board.scores, atol=1e-4)
    np.testing.assert_allclose(fit.board.ci_high, swapped.board.ci_high, atol=1e-4)
    np.testing.assert_allclose(fit.beta, swapped.beta, atol=1e-8)


@pytest.mark.parametrize("reweighted", [False, True])
def test_without_style_differences_it_is_the_plain_board(reweighted: bool) -> None:
    """Identical features on both sides: beta = 0 and the scores are plain Bradley-Terry's."""
    block = synthetic_style_battles(n_models=10, n_battles=4000, seed=6)
    flat = BattleColumns(block.features)
    flat.extend_indexed(
        block.model_a, block.model_b, block.outcome, block.style_a, block.style_a, block.models
    )
    board_options = FitOptions(reweighted=reweighted, min_pair_count=20)
    fit = fit_contextual(flat, options=StyleOptions(board=board_options))
    plain = fit_board(flat.counts(), board_options)
    np.testing.assert_allclose(fit.beta, 0.0, atol=1e-12)
    np.testing.assert_allclose(fit.board.scores, plain.scores, atol=1e-3)


def test_recovers_the_true_coefficients() -> None:
    beta = (0.5, 0.1, 0.2, -0.15)
    block = synthetic_style_battles(n_models=10, n_battles=60_000, seed=11, beta=beta, tie_rate=0.0)
    fit = fit_contextual(block, options=WEAK_REG)
    for name, true in zip(block.features, beta, strict=True):
        c = fit.coefficients[name]
        assert abs(c.value - true) < 3 * (c.ci_high - c.ci_low) / 3.92, (name, c, true)


def _verbose_board() -> BattleColumns:
    """12 equally strong models; model-000 writes answers e^1.2 = 3.3x longer than the rest,
    and voters prefer longer answers."""
    m = 12
    verbosity = np.zeros(m)
    verbosity[0] = 1.2
    return synthetic_style_battles(
        n_models=m,
        n_battles=30_000,
        seed=5,
        strength=np.zeros(m),
        verbosity=verbosity,
        beta=(0.6, 0.0, 0.0, 0.0),
    )


@pytest.mark.parametrize(
    ("options", "least_drop"),
    [(StyleOptions(), 10.0), (StyleOptions(reg=1e-3), 80.0)],
    ids=["arena-rank reg=1", "weak reg"],
)
def test_a_model_winning_only_by_length_drops_on_the_style_board(
    options: StyleOptions, least_drop: float
) -> None:
    block = _verbose_board()
    plain = fit_board(block.counts(), options.board)
    style = fit_contextual(block, options=options)
    verbose = plain.models.index("model-000")
    others = np.arange(len(plain.models)) != verbose
    # plain board: the verbose model is first, far above the others
    assert plain.rank[verbose] == 1
    assert plain.scores[verbose] - plain.scores[others].max() > 80.0
    # style board: it drops, and it is the only one that moves much
    drop = plain.scores[verbose] - style.board.scores[verbose]
    assert drop > least_drop
    moved = np.abs(style.board.scores[others] - plain.scores[others])
    assert moved.max() < drop / 2
    assert style.coefficients["tokens"].ci_low > 0.0


def test_weakly_regularised_style_board_puts_the_verbose_model_back_in_the_pack() -> None:
    block = _verbose_board()
    style = fit_contextual(block, options=StyleOptions(reg=1e-3)).board
    verbose = style.models.index("model-000")
    others = np.arange(len(style.models)) != verbose
    width = style.ci_high[verbose] - style.ci_low[verbose]
    assert abs(style.scores[verbose] - np.median(style.scores[others])) < width


def test_models_without_battles_and_empty_boards() -> None:
    block = synthetic_style_battles(n_models=4, n_battles=500, seed=1)
    fit = fit_contextual(block, models=(*block.models, "idle"))
    assert "idle" in fit.board.models
    idle = fit.board.models.index("idle")
    assert fit.board.votes[idle] == 0 and np.isfinite(fit.board.scores).all()
    empty = fit_contextual(BattleColumns(), models=("a", "b"))
    assert empty.board.converged and np.all(empty.board.scores == 1000.0)
    with pytest.raises(ValueError, match="not on the board"):
        fit_contextual(block, models=("model-000",))


names = model_names(4)
battle = st.tuples(
    st.integers(0, 3),
    st.integers(1, 3),
    st.sampled_from(range(len(OUTCOMES))),
    st.lists(st.integers(0, 500), min_size=8, max_size=8),
)


@settings(max_examples=40, deadline=None)
@given(st.lists(battle, min_size=1, max_size=60))
def test_any_board_gives_finite_standings(rows: list[tuple[int, int, int, list[int]]]) -> None:
    block = BattleColumns()
    for a, d, outcome, style in rows:
        block.append(names[a], names[(a + d) % 4], OUTCOMES[outcome], style[:4], style[4:])
    fit = fit_contextual(block)
    for values in (fit.board.scores, fit.board.ci_low, fit.board.ci_high, fit.beta):
        assert np.all(np.isfinite(values))
    assert np.all(fit.board.ci_low <= fit.board.ci_high)


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_battle_order_never_changes_the_fit(seed: int) -> None:
    block = synthetic_style_battles(n_models=6, n_battles=600, seed=8)
    order = np.random.default_rng(seed).permutation(len(block))
    shuffled = BattleColumns(block.features)
    shuffled.extend_indexed(
        block.model_a[order],
        block.model_b[order],
        block.outcome[order],
        block.style_a[order],
        block.style_b[order],
        block.models,
    )
    fit, again = fit_contextual(block), fit_contextual(shuffled)
    np.testing.assert_allclose(again.board.scores, fit.board.scores, atol=1e-6)
    np.testing.assert_allclose(again.board.ci_low, fit.board.ci_low, atol=1e-6)
    np.testing.assert_allclose(again.beta, fit.beta, atol=1e-9)
