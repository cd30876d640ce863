"""The packed layout of a board's counts in Redis, and its decoding into ``PairCounts``.

An arena numbers its models in order of first appearance (``KeyLayout.model_index``: model ->
0, 1, 2, ..; assigned by apply_batch.lua, append-only). A board's counts are one string
(``KeyLayout.counts``) of big-endian unsigned 32-bit cells, incremented with ``BITFIELD INCRBY
u32``. The unordered pair of model numbers ``lo < hi`` owns the four cells from
``4 * (hi * (hi - 1) / 2 + lo)``: the lower triangle in row-major order, so a new model appends
its row at the end of the string and earlier cells never move. The four cells are the outcomes
in ``OUTCOMES`` order as seen with model ``lo`` on side A (a battle with ``hi`` on side A is
stored with model_a/model_b swapped). 300 models: 44,850 pairs, 718 kB per saturated board.

Decoding turns the string back into the canonical triples (``a < b`` by name, as
``shared.keys.count_field``), i.e. the same ``PairCounts`` as the triples would build.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Final

import numpy as np
from numpy.typing import NDArray

from services.rating.engine import OUTCOMES, PairCounts
from services.rating.engine.counts import Triple
from shared.keys import text

CELLS_PER_PAIR: Final = len(OUTCOMES)
# One count increment as apply_batch.lua reads it (struct format ">HHHBI4", 11 bytes): view
# index (1-based), positions of model_a and model_b in the slice's model list (0-based), outcome
# code (OUTCOMES order, model_a's side), increment.
INCREMENT: Final = np.dtype([("view", ">u2"), ("a", ">u2"), ("b", ">u2"), ("outcome", "u1"),
                             ("n", ">u4")])
OUTCOME_CODE: Final[dict[str, int]] = {name: i for i, name in enumerate(OUTCOMES)}
_FLIP: Final = np.array([1, 0, 2, 3], dtype=np.intp)  # model_a <-> model_b, ties stay


def pair_cell(lo: int, hi: int, outcome: int) -> int:
    """The cell (u32 index into the string) of a pair of model numbers ``lo < hi``."""
    if not 0 <= lo < hi:
        raise ValueError(f"need 0 <= lo < hi, got {lo}, {hi}")
    return CELLS_PER_PAIR * (hi * (hi - 1) // 2 + lo) + outcome


def encode_increments(
    increments: Sequence[Mapping[Triple, int]],
) -> tuple[list[str], bytes]:
    """The slice's models (sorted) and its count increments packed as ``INCREMENT`` records;
    ``increments[i]`` holds view ``i + 1``'s ``(model_a, model_b, outcome) -> n``."""
    models = sorted({m for view in increments for a, b, _ in view for m in (a, b)})
    if len(models) > 0xFFFF:
        raise ValueError(f"a slice counts at most 65535 models, got {len(models)}")
    position = {m: i for i, m in enumerate(models)}
    rows = []
    for index, view in enumerate(increments, start=1):
        for (a, b, outcome), n in sorted(view.items()):
            if a == b:
                raise ValueError(f"model {a!r} cannot battle itself")
            if not 0 <= n <= 0xFFFFFFFF:
                raise ValueError(f"increment {n} of {(a, b, outcome)} is not a u32")
            rows.append((index, position[a], position[b], OUTCOME_CODE[outcome], n))
    return models, np.array(rows, dtype=INCREMENT).tobytes()


def names_by_number(raw: Mapping[bytes | str, bytes | str]) -> list[str]:
    """The model index hash (model -> number) as the list of models by number."""
    names: list[str | None] = [None] * len(raw)
    for model, number in raw.items():
        i = int(number)
        if not 0 <= i < len(names) or names[i] is not None:
            raise ValueError(f"model index is not 0..{len(raw) - 1} (got {i} for {model!r})")
        names[i] = text(model)
    return [n for n in names if n is not None]


@lru_cache(maxsize=8)
def _triangle(n: int) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    hi, lo = np.tril_indices(n, -1)  # row-major lower triangle: the cell order of the string
    return lo, hi


def decode_board(names: Sequence[str], raw: bytes | None) -> PairCounts:
    """A board's packed string as ``PairCounts`` over the models that have votes on it."""
    if not raw:
        return PairCounts()
    if not isinstance(raw, bytes):
        raise TypeError("packed counts need a Redis client without decode_responses")
    if len(raw) % 4:
        raise ValueError(f"packed counts of {len(raw)} bytes are not whole u32 cells")
    cells = np.frombuffer(raw, dtype=">u4")
    n = len(names)
    pairs = n * (n - 1) // 2
    if len(cells) > CELLS_PER_PAIR * pairs:
        raise ValueError(f"packed counts hold cells beyond the {n} indexed models")
    padded = np.zeros(CELLS_PER_PAIR * pairs, dtype=np.int64)
    padded[: len(cells)] = cells
    values = padded.reshape(pairs, CELLS_PER_PAIR)
    lo, hi = _triangle(n)
    used = values.any(axis=1)
    values, lo, hi = values[used], lo[used], hi[used]
    numbers = np.unique(np.concatenate([lo, hi]))
    order = sorted(numbers.tolist(), key=lambda i: names[i])
    position = np.zeros(n, dtype=np.intp)
    position[order] = np.arange(len(order))
    p, q = position[lo], position[hi]
    swapped = p > q  # lo's name sorts after hi's: lo is side B of the canonical triple
    values = np.where(swapped[:, None], values[:, _FLIP], values)
    m = len(order)
    out = np.zeros((CELLS_PER_PAIR, m, m), dtype=np.int64)
    out[:, np.minimum(p, q), np.maximum(p, q)] = values.T
    return PairCounts([names[i] for i in order], out)
