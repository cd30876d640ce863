"""The columnar battle store: appending, encoding, counts."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.rating.engine import OUTCOMES, BattleColumns
from tests.unit.engine.synthetic import counts_of, synthetic_style_battles

NAMES = ("alpha", "bravo", "charlie", "delta")


def test_append_registers_models_in_order_of_appearance() -> None:
    block = BattleColumns(capacity=1)
    block.append(
        "zulu",
        "alpha",
        "model_a",
        {"tokens": 10, "headers": 1, "lists": 0, "bold": 2},
        [5, 0, 0, 0],
    )
    block.append("alpha", "mike", "tie", [1, 2, 3, 4], [4, 3, 2, 1])
    assert block.models == ("zulu", "alpha", "mike")
    assert len(block) == 2
    assert block.model_a.tolist() == [0, 1] and block.model_b.tolist() == [1, 2]
    assert block.outcome.tolist() == [0, 2]
    assert block.style_a.tolist() == [[10, 1, 0, 2], [1, 2, 3, 4]]
    assert block.nbytes() == 2 * 41


@pytest.mark.parametrize(
    ("a", "b", "outcome", "style", "message"),
    [
        ("x", "x", "tie", [0, 0, 0, 0], "itself"),
        ("x", "y", "draw", [0, 0, 0, 0], "unknown outcome"),
        ("x", "y", "tie", [0, 0, 0], "expected 4"),
        ("x", "y", "tie", [0, -1, 0, 0], "non-negative"),
        ("x", "y", "tie", {"tokens": 1}, "missing"),
    ],
)
def test_append_rejects_bad_battles(
    a: str, b: str, outcome: str, style: list[int], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        BattleColumns().append(a, b, outcome, style, [0, 0, 0, 0])


battle = st.tuples(
    st.integers(0, 3),
    st.integers(1, 3),
    st.integers(0, 3),
    st.lists(st.integers(0, 2**31 - 1), min_size=8, max_size=8),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(battle, max_size=50))
def test_bytes_round_trip(rows: list[tuple[int, int, int, list[int]]]) -> None:
    block = BattleColumns()
    for a, d, outcome, style in rows:
        block.append(NAMES[a], NAMES[(a + d) % 4], OUTCOMES[outcome], style[:4], style[4:])
    data = block.to_bytes()
    again = BattleColumns.from_bytes(data)
    assert again == block
    assert again.to_bytes() == data


def test_encoding_is_compact() -> None:
    block = synthetic_style_battles(n_models=50, n_battles=20_000, seed=1)
    per_battle = len(block.to_bytes()) / len(block)
    assert per_battle < 20  # u1/u2 model ids, u1 outcome, u2 tokens, u1 markdown counts
    again = BattleColumns.from_bytes(block.to_bytes())
    again.append("model-000", "model-001", "model_b", [1, 2, 3, 4], [4, 3, 2, 1])
    assert len(again) == len(block) + 1


def test_from_bytes_rejects_garbage() -> None:
    with pytest.raises(ValueError, match="magic"):
        BattleColumns.from_bytes(b"XXXX" + bytes(20))
    data = synthetic_style_battles(n_models=5, n_battles=10).to_bytes()
    with pytest.raises(ValueError, match="length"):
        BattleColumns.from_bytes(data[:-1])


def test_extend_merges_blocks_with_their_own_model_order() -> None:
    first = synthetic_style_battles(n_models=6, n_battles=300, seed=1)
    second = BattleColumns()
    second.append("model-005", "new-model", "model_a", [1, 1, 1, 1], [2, 2, 2, 2])
    merged = BattleColumns()
    merged.extend(second)
    merged.extend(first)
    assert len(merged) == 301
    assert merged.models[:2] == ("model-005", "new-model")
    assert merged.counts().total == 301


def test_counts_match_the_battles() -> None:
    block = BattleColumns()
    battles = [("b", "a", "model_a"), ("a", "b", "tie"), ("c", "a", "tie_bothbad")]
    for a, b, outcome in battles:
        block.append(a, b, outcome, [0, 0, 0, 0], [0, 0, 0, 0])
    assert block.counts() == counts_of(battles)
    assert np.array_equal(block.counts().cells, counts_of(battles).cells)


def test_a_snapshot_shares_memory_and_never_changes() -> None:
    cols = BattleColumns(capacity=4)
    for i in range(3):
        cols.append("a", "b", "model_a", [i, 0, 0, 0], [1, 1, 1, 1])
    snap = cols.snapshot()
    assert np.shares_memory(snap.style_a, cols.style_a)
    before = (snap.model_a.copy(), snap.style_a.copy(), snap.models)
    for i in range(10):  # in place, then past the capacity (new arrays)
        cols.append("c", "a", "tie", [9, 9, 9, 9], [i, 0, 0, 0])
    assert len(snap) == 3 and len(cols) == 13 and snap.models == ("a", "b")
    assert (snap.model_a == before[0]).all() and (snap.style_a == before[1]).all()
    with pytest.raises(ValueError):
        snap.style_a[0, 0] = 5  # read-only
    snap.append("b", "a", "model_b", [1, 1, 1, 1], [2, 2, 2, 2])  # copies, the parent is intact
    assert len(snap) == 4 and len(cols) == 13 and cols.model_a[3] == cols.models.index("c")
    assert int(snap.counts().cells.sum()) == 4
