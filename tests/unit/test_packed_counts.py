"""The packed counts layout: cell positions, and decoding back to the canonical PairCounts."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.rating.engine import OUTCOMES, PairCounts
from services.rating.packed_counts import (
    INCREMENT,
    decode_board,
    encode_increments,
    names_by_number,
    pair_cell,
)
from shared.keys import count_field, parse_count_field

FLIP = {"model_a": "model_b", "model_b": "model_a", "tie": "tie", "tie_bothbad": "tie_bothbad"}


def pack(numbers: dict[str, int], battles: list[tuple[str, str, str, int]]) -> bytes:
    """What apply_batch.lua writes, in Python: add each battle to its pair's cell."""
    n = len(numbers)
    cells = np.zeros(4 * n * (n - 1) // 2, dtype=np.int64)
    top = -1
    for a, b, outcome, count in battles:
        lo, hi, k = numbers[a], numbers[b], OUTCOMES.index(outcome)  # type: ignore[arg-type]
        if lo > hi:
            lo, hi, k = hi, lo, OUTCOMES.index(FLIP[outcome])  # type: ignore[arg-type]
        cell = pair_cell(lo, hi, k)
        cells[cell] += count
        top = max(top, cell)
    return cells[: top + 1].astype(">u4").tobytes()  # BITFIELD grows the string to the cell


def test_cells_follow_the_lower_triangle_so_new_models_append() -> None:
    assert [pair_cell(0, 1, 0), pair_cell(0, 2, 0), pair_cell(1, 2, 3), pair_cell(0, 3, 0)] == [
        0, 4, 11, 12]
    with pytest.raises(ValueError):
        pair_cell(2, 2, 0)


def test_names_by_number_inverts_the_index_and_rejects_holes() -> None:
    assert names_by_number({b"z": b"0", b"a": b"2", b"m": b"1"}) == ["z", "m", "a"]
    with pytest.raises(ValueError):
        names_by_number({b"z": b"0", b"a": b"2"})


def test_an_empty_board_decodes_to_empty_counts() -> None:
    assert decode_board(["a", "b"], None) == PairCounts()
    assert decode_board([], b"") == PairCounts()


def test_decoding_equals_the_canonical_triples_and_skips_models_without_votes() -> None:
    # numbers in order of appearance, not by name: "z" first; "q" has no votes on this board
    numbers = {"z": 0, "q": 1, "a": 2, "m": 3}
    battles = [("z", "a", "model_a", 5), ("a", "z", "tie", 2), ("m", "a", "model_b", 1),
               ("z", "m", "tie_bothbad", 7)]
    decoded = decode_board(list(numbers), pack(numbers, battles))
    want: dict[str, int] = {}
    for a, b, outcome, count in battles:
        f = count_field(a, b, outcome)  # type: ignore[arg-type]
        want[f] = want.get(f, 0) + count
    assert decoded == PairCounts.from_triples({parse_count_field(f): n for f, n in want.items()})
    assert decoded.models == ("a", "m", "z")


def test_cells_beyond_the_index_are_refused() -> None:
    with pytest.raises(ValueError):
        decode_board(["a", "b"], np.zeros(5, dtype=">u4").tobytes())


models = st.sampled_from([f"m{i:02d}" for i in range(12)])


@given(st.lists(st.tuples(models, models, st.sampled_from(OUTCOMES), st.integers(1, 2**25)),
                max_size=60),
       st.permutations(list(range(12))))
def test_decoding_round_trips(battles: list[tuple[str, str, str, int]],
                              order: list[int]) -> None:
    battles = [b for b in battles if b[0] != b[1]]
    numbers = {f"m{i:02d}": n for i, n in zip(order, range(12), strict=True)}
    triples: dict[tuple[str, str, str], int] = {}
    for a, b, outcome, count in battles:
        key = parse_count_field(count_field(a, b, outcome))  # type: ignore[arg-type]
        triples[key] = triples.get(key, 0) + count
    names = sorted(numbers, key=numbers.__getitem__)
    assert decode_board(names, pack(numbers, battles)) == PairCounts.from_triples(triples)


def test_increments_are_packed_against_the_slice_models() -> None:
    models, packed = encode_increments([{("b", "a", "tie"): 3}, {("a", "c", "model_b"): 1}])
    assert models == ["a", "b", "c"]
    assert np.frombuffer(packed, dtype=INCREMENT).tolist() == [(1, 1, 0, 2, 3), (2, 0, 2, 1, 1)]
    with pytest.raises(ValueError):
        encode_increments([{("a", "a", "tie"): 1}])
