"""A columnar block of individual battles with per-side style features (for style control).

The contextual fit needs every battle, not just counts, because the style features vary per
battle. :class:`BattleColumns` keeps them as numpy columns, 41 bytes per battle in memory
(two int32 model indices, one uint8 outcome, 2 x 4 int32 features) and about 17 bytes per
battle encoded by :meth:`BattleColumns.to_bytes` (each column stored in the narrowest
unsigned integer type that holds it).

Model indices point into ``models``, in the order the models were first seen (appending a
battle never re-indexes). Outcome codes are the positions in :data:`OUTCOMES`.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final, TypeVar

import numpy as np
from numpy.typing import NDArray

from services.rating.engine.counts import OUTCOMES, PairCounts
from services.rating.engine.style import STYLE_FEATURES

IntColumn = NDArray[np.int32]
_MAGIC: Final = b"PDBC"
_VERSION: Final = 1
_HEADER: Final = struct.Struct("<4sBBIII")  # magic, version, n_features, n_battles, n_models, names
_WIDTHS: Final = (np.dtype("<u1"), np.dtype("<u2"), np.dtype("<u4"))
_OUTCOME_CODE: Final[dict[str, int]] = {name: code for code, name in enumerate(OUTCOMES)}

Features = Mapping[str, int] | Sequence[int]


def _narrowest(column: NDArray[np.integer]) -> np.dtype[np.unsignedinteger]:
    top = int(column.max()) if column.size else 0
    for dtype in _WIDTHS:
        if top <= np.iinfo(dtype).max:
            return dtype
    raise ValueError(f"value {top} does not fit in 32 bits")


_Column = TypeVar("_Column", bound=NDArray[Any])


def _frozen(view: _Column) -> _Column:
    view.flags.writeable = False
    return view


class BattleColumns:
    """Append-only columns of battles: ``model_a``, ``model_b``, ``outcome``, ``style_a/_b``.

    ``style_a[k, f]`` is feature ``features[f]`` of side A's answer in battle k (non-negative
    counts). Capacity grows geometrically, so an append is amortised O(1).
    """

    __slots__ = ("_a", "_b", "_features", "_index", "_models", "_n", "_outcome", "_sa", "_sb")

    def __init__(self, features: Sequence[str] = STYLE_FEATURES, capacity: int = 1024) -> None:
        if len(set(features)) != len(features) or not features:
            raise ValueError("feature names must be distinct and non-empty")
        self._features: tuple[str, ...] = tuple(features)
        self._models: list[str] = []
        self._index: dict[str, int] = {}
        self._n = 0
        k = len(self._features)
        capacity = max(capacity, 1)
        self._a: IntColumn = np.zeros(capacity, np.int32)
        self._b: IntColumn = np.zeros(capacity, np.int32)
        self._outcome: NDArray[np.uint8] = np.zeros(capacity, np.uint8)
        self._sa: IntColumn = np.zeros((capacity, k), np.int32)
        self._sb: IntColumn = np.zeros((capacity, k), np.int32)

    # -- views ----------------------------------------------------------------------------

    @property
    def features(self) -> tuple[str, ...]:
        return self._features

    @property
    def models(self) -> tuple[str, ...]:
        """Model ids in index order (first appearance), not sorted."""
        return tuple(self._models)

    def __len__(self) -> int:
        return self._n

    @property
    def model_a(self) -> IntColumn:
        return self._a[: self._n]

    @property
    def model_b(self) -> IntColumn:
        return self._b[: self._n]

    @property
    def outcome(self) -> NDArray[np.uint8]:
        return self._outcome[: self._n]

    @property
    def style_a(self) -> IntColumn:
        return self._sa[: self._n]

    @property
    def style_b(self) -> IntColumn:
        return self._sb[: self._n]

    def nbytes(self) -> int:
        """Bytes held by the used part of the columns (capacity slack excluded)."""
        per_battle = 4 + 4 + 1 + 2 * 4 * len(self._features)
        return per_battle * self._n

    def snapshot(self) -> BattleColumns:
        """The battles so far, sharing memory with these columns instead of copying them (a
        fit in a thread reads it while batches keep appending). Appends here write past its end
        or into new arrays, so it never changes; its own arrays are read-only views, and
        appending to it copies them first."""
        out = BattleColumns.__new__(BattleColumns)
        out._features = self._features
        out._models = list(self._models)
        out._index = dict(self._index)
        out._n = self._n
        out._a, out._b = _frozen(self._a[: self._n]), _frozen(self._b[: self._n])
        out._outcome = _frozen(self._outcome[: self._n])
        out._sa, out._sb = _frozen(self._sa[: self._n]), _frozen(self._sb[: self._n])
        return out

    # -- appending ------------------------------------------------------------------------

    def model_index(self, model: str) -> int:
        """Index of ``model``, registering it if new."""
        index = self._index.get(model)
        if index is None:
            index = self._index[model] = len(self._models)
            self._models.append(model)
        return index

    def append(
        self, model_a: str, model_b: str, outcome: str, style_a: Features, style_b: Features
    ) -> None:
        """One battle; ``style_*`` as ``{feature: count}`` or a sequence in feature order."""
        if model_a == model_b:
            raise ValueError(f"model {model_a!r} cannot battle itself")
        code = _OUTCOME_CODE.get(outcome)
        if code is None:
            raise ValueError(f"unknown outcome {outcome!r}; expected one of {OUTCOMES}")
        row_a, row_b = self._feature_row(style_a), self._feature_row(style_b)
        self._reserve(self._n + 1)
        k = self._n
        self._a[k] = self.model_index(model_a)
        self._b[k] = self.model_index(model_b)
        self._outcome[k] = code
        self._sa[k] = row_a
        self._sb[k] = row_b
        self._n += 1

    def extend_indexed(
        self,
        model_a: NDArray[np.integer],
        model_b: NDArray[np.integer],
        outcome: NDArray[np.integer],
        style_a: NDArray[np.integer],
        style_b: NDArray[np.integer],
        models: Sequence[str],
    ) -> None:
        """Many battles at once, with model indices into ``models`` (a name list)."""
        n = len(model_a)
        k = len(self._features)
        shapes = (len(model_b), len(outcome), style_a.shape, style_b.shape)
        if shapes != (n, n, (n, k), (n, k)):
            raise ValueError("columns must have the same length and style_* shape (n, features)")
        if n == 0:
            return
        remap = np.array([self.model_index(m) for m in models], dtype=np.int32)
        a, b = remap[np.asarray(model_a)], remap[np.asarray(model_b)]
        if (a == b).any():
            raise ValueError("a model cannot battle itself")
        if int(np.max(outcome)) >= len(OUTCOMES) or int(np.min(outcome)) < 0:
            raise ValueError("outcome codes must index OUTCOMES")
        if (np.min(style_a) if style_a.size else 0) < 0 or (
            np.min(style_b) if style_b.size else 0
        ) < 0:
            raise ValueError("style features are non-negative counts")
        self._reserve(self._n + n)
        end = self._n + n
        self._a[self._n : end] = a
        self._b[self._n : end] = b
        self._outcome[self._n : end] = outcome
        self._sa[self._n : end] = style_a
        self._sb[self._n : end] = style_b
        self._n = end

    def extend(self, other: BattleColumns) -> None:
        """Append every battle of ``other`` (same features)."""
        if other.features != self._features:
            raise ValueError("feature names differ")
        self.extend_indexed(
            other.model_a, other.model_b, other.outcome, other.style_a, other.style_b, other.models
        )

    def _feature_row(self, style: Features) -> list[int]:
        if isinstance(style, Mapping):
            missing = [f for f in self._features if f not in style]
            if missing:
                raise ValueError(f"missing style features {missing}")
            row = [int(style[f]) for f in self._features]
        else:
            row = [int(v) for v in style]
            if len(row) != len(self._features):
                raise ValueError(f"expected {len(self._features)} style features")
        if any(v < 0 or v > np.iinfo(np.int32).max for v in row):
            raise ValueError("style features are non-negative 32-bit counts")
        return row

    def _reserve(self, size: int) -> None:
        capacity = self._a.shape[0]
        if size <= capacity and self._a.flags.writeable:
            return
        new = max(size, 2 * capacity)
        self._a = np.resize(self._a, new)
        self._b = np.resize(self._b, new)
        self._outcome = np.resize(self._outcome, new)
        self._sa = np.resize(self._sa, (new, len(self._features)))
        self._sb = np.resize(self._sb, (new, len(self._features)))

    # -- derived --------------------------------------------------------------------------

    def counts(self) -> PairCounts:
        """The (model_a, model_b, outcome) counts of these battles (sorted model ids)."""
        names = sorted(self._models)
        m = len(names)
        order = np.array([names.index(x) for x in self._models] or [0], dtype=np.int64)
        a, b = order[self.model_a], order[self.model_b]
        flat = (self.outcome.astype(np.int64) * m + a) * m + b
        cells = np.bincount(flat, minlength=len(OUTCOMES) * m * m).reshape(len(OUTCOMES), m, m)
        return PairCounts(names, cells.astype(np.int64))

    # -- encoding -------------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        """Compact, self-describing little-endian encoding (see :meth:`from_bytes`)."""
        names = "\n".join([*self._features, *self._models]).encode("utf-8")
        header = _HEADER.pack(
            _MAGIC, _VERSION, len(self._features), self._n, len(self._models), len(names)
        )
        columns: list[NDArray[np.integer]] = [self.model_a, self.model_b, self.outcome]
        columns += [self.style_a[:, f] for f in range(len(self._features))]
        columns += [self.style_b[:, f] for f in range(len(self._features))]
        widths = [_narrowest(c) for c in columns]
        parts = [header, names, bytes(w.itemsize for w in widths)]
        parts += [
            np.ascontiguousarray(c, dtype=w).tobytes() for c, w in zip(columns, widths, strict=True)
        ]
        return b"".join(parts)

    @classmethod
    def from_bytes(cls, data: bytes) -> BattleColumns:
        magic, version, k, n, m, names_len = _HEADER.unpack_from(data, 0)
        if magic != _MAGIC or version != _VERSION:
            raise ValueError("not a Podium battle block (bad magic or version)")
        offset = _HEADER.size
        names = data[offset : offset + names_len].decode("utf-8").split("\n") if names_len else []
        offset += names_len
        if len(names) != k + m:
            raise ValueError("corrupt battle block: name count")
        n_columns = 3 + 2 * k
        sizes = data[offset : offset + n_columns]
        offset += n_columns
        if any(size not in (1, 2, 4) for size in sizes):
            raise ValueError("corrupt battle block: column width")
        if len(sizes) != n_columns or offset + sum(sizes) * n != len(data):
            raise ValueError("corrupt battle block: length")
        columns: list[NDArray[np.integer]] = []
        for size in sizes:
            dtype = np.dtype(f"<u{size}")
            columns.append(np.frombuffer(data, dtype=dtype, count=n, offset=offset))
            offset += size * n
        block = cls(names[:k], capacity=n)
        block._models = names[k:]
        block._index = {name: i for i, name in enumerate(block._models)}
        block._a[:n] = columns[0]
        block._b[:n] = columns[1]
        block._outcome[:n] = columns[2]
        if n:
            block._sa[:n] = np.column_stack(columns[3 : 3 + k])
            block._sb[:n] = np.column_stack(columns[3 + k :])
        block._n = n
        return block

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, BattleColumns):
            return NotImplemented
        return (
            self._features == other._features
            and self._models == other._models
            and all(
                np.array_equal(x, y) for x, y in zip(self._columns(), other._columns(), strict=True)
            )
        )

    __hash__ = None  # type: ignore[assignment]

    def _columns(self) -> Iterable[NDArray[np.integer]]:
        return (self.model_a, self.model_b, self.outcome, self.style_a, self.style_b)

    def __repr__(self) -> str:
        return f"BattleColumns({self._n} battles, {len(self._models)} models)"
