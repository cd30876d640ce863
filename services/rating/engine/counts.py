"""Vote counts of one board: the sufficient statistics of the Bradley-Terry model.

A board is stored (in Redis) as the count of each ``(model_a, model_b, outcome)`` triple.
:class:`PairCounts` holds exactly that information, losslessly, as four dense M x M integer
arrays indexed ``[a, b]`` (one per outcome) over the sorted model ids. Applying one vote to an
existing pair is O(1) whatever the number of votes so far; a vote that introduces a new model
re-indexes the arrays (O(M^2), once per model).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Final

import numpy as np
from numpy.typing import NDArray

from shared.events import OUTCOMES, Outcome  # a vote's outcome: the contract's one definition

__all__ = ["OUTCOMES", "FloatMatrix", "IntMatrix", "Outcome", "PairCounts", "Triple"]
_OUTCOME_INDEX: Final[dict[str, int]] = {name: i for i, name in enumerate(OUTCOMES)}

Triple = tuple[str, str, str]
IntMatrix = NDArray[np.int64]
FloatMatrix = NDArray[np.float64]


def _outcome_index(outcome: str) -> int:
    try:
        return _OUTCOME_INDEX[outcome]
    except KeyError:
        raise ValueError(f"unknown outcome {outcome!r}; expected one of {OUTCOMES}") from None


class PairCounts:
    """Counts of (model_a, model_b, outcome) triples for one board.

    ``cells[k, a, b]`` is the number of battles with model ``a`` on side A, model ``b`` on
    side B and outcome ``OUTCOMES[k]``. Models are sorted ids; a model may have no votes
    (when registered through ``models=``).
    """

    __slots__ = ("_cells", "_index", "_models")

    def __init__(self, models: Iterable[str] = (), cells: IntMatrix | None = None) -> None:
        given = tuple(models)
        self._models: tuple[str, ...] = tuple(sorted(set(given)))
        m = len(self._models)
        if cells is None:
            cells = np.zeros((len(OUTCOMES), m, m), dtype=np.int64)
        elif given != self._models:
            raise ValueError("model ids must be unique and sorted when cells are given")
        if cells.shape != (len(OUTCOMES), m, m):
            raise ValueError(f"cells must have shape {(len(OUTCOMES), m, m)}, got {cells.shape}")
        if (cells < 0).any():
            raise ValueError("counts must be non-negative")
        if np.einsum("kii->", cells) != 0:
            raise ValueError("a model cannot battle itself")
        self._cells: IntMatrix = np.ascontiguousarray(cells, dtype=np.int64)
        self._index: dict[str, int] = {name: i for i, name in enumerate(self._models)}

    # -- construction ---------------------------------------------------------------------

    @classmethod
    def from_triples(cls, triples: Mapping[Triple, int], models: Iterable[str] = ()) -> PairCounts:
        """Build from ``{(model_a, model_b, outcome): count}``; zero counts are ignored.

        ``models`` adds ids that have no votes yet. Raises ``ValueError`` on an unknown
        outcome, a negative count or a self-battle.
        """
        names: set[str] = set(models)
        for (a, b, outcome), n in triples.items():
            _outcome_index(outcome)
            if n < 0:
                raise ValueError(f"negative count {n} for {(a, b, outcome)}")
            if n and a == b:
                raise ValueError(f"model {a!r} cannot battle itself")
            if n:
                names.update((a, b))
        counts = cls(names)
        for (a, b, outcome), n in triples.items():
            if n:
                counts._cells[_outcome_index(outcome), counts._index[a], counts._index[b]] += n
        return counts

    def copy(self) -> PairCounts:
        return PairCounts(self._models, self._cells.copy())

    # -- updates --------------------------------------------------------------------------

    def add(self, model_a: str, model_b: str, outcome: str, n: int = 1) -> None:
        """Apply ``n`` votes in place: O(1) for known models."""
        k = _outcome_index(outcome)
        if model_a == model_b:
            raise ValueError(f"model {model_a!r} cannot battle itself")
        ia = self._index.get(model_a)
        ib = self._index.get(model_b)
        if ia is None or ib is None:
            self._grow((model_a, model_b))
            ia, ib = self._index[model_a], self._index[model_b]
        new = self._cells[k, ia, ib] + n
        if new < 0:
            raise ValueError("counts must stay non-negative")
        self._cells[k, ia, ib] = new

    def add_many(self, increments: Mapping[Triple, int]) -> None:
        """``add`` of every ``(model_a, model_b, outcome) -> n`` at once: one numpy update
        instead of a Python-level read and write of a numpy cell per triple (a batch brings a few
        thousand). The same counts and the same errors as ``add`` one by one, except that it is
        all or nothing: nothing is added when any triple is refused."""
        if not increments:
            return
        while True:  # one pass; a second one after adding models the counts did not have yet
            index = self._index
            missing: set[str] = set()
            ks: list[int | None] = []
            ias: list[int | None] = []
            ibs: list[int | None] = []
            for model_a, model_b, outcome in increments:
                k = _OUTCOME_INDEX.get(outcome)
                if k is None:
                    _outcome_index(outcome)  # raises
                if model_a == model_b:
                    raise ValueError(f"model {model_a!r} cannot battle itself")
                ia, ib = index.get(model_a), index.get(model_b)
                if ia is None or ib is None:
                    missing.update((model_a, model_b))
                ks.append(k)
                ias.append(ia)
                ibs.append(ib)
            if not missing:
                break
            self._grow(missing)
        at = (np.array(ks, dtype=np.intp), np.array(ias, dtype=np.intp),
              np.array(ibs, dtype=np.intp))  # distinct triples are distinct cells: no repeats
        new = self._cells[at] + np.array(list(increments.values()), dtype=np.int64)
        if (new < 0).any():
            raise ValueError("counts must stay non-negative")
        self._cells[at] = new

    def _grow(self, names: Iterable[str]) -> None:
        models = tuple(sorted(set(self._models).union(names)))
        cells = np.zeros((len(OUTCOMES), len(models), len(models)), dtype=np.int64)
        pos = np.array([models.index(name) for name in self._models], dtype=np.intp)
        if pos.size:
            cells[:, pos[:, None], pos[None, :]] = self._cells
        self._models, self._cells = models, cells
        self._index = {name: i for i, name in enumerate(models)}

    # -- views ----------------------------------------------------------------------------

    @property
    def models(self) -> tuple[str, ...]:
        return self._models

    @property
    def cells(self) -> IntMatrix:
        """Read-only view of the ``(outcome, a, b)`` count array."""
        view = self._cells.view()
        view.flags.writeable = False
        return view

    def index(self, model: str) -> int:
        return self._index[model]

    def __len__(self) -> int:
        return len(self._models)

    @property
    def total(self) -> int:
        return int(self._cells.sum())

    def triples(self) -> dict[Triple, int]:
        """The non-zero ``{(model_a, model_b, outcome): count}`` entries."""
        return dict(self._iter_triples())

    def _iter_triples(self) -> Iterator[tuple[Triple, int]]:
        for k, a, b in zip(*np.nonzero(self._cells), strict=True):
            yield (self._models[a], self._models[b], OUTCOMES[k]), int(self._cells[k, a, b])

    def wins(self) -> IntMatrix:
        """``wins[i, j]``: battles model i won against model j, on either side."""
        c = self._cells
        out: IntMatrix = c[0] + c[1].T
        return out

    def ties(self) -> IntMatrix:
        """``ties[i, j]``: tied battles (tie or tie_bothbad) between i and j; symmetric."""
        t: IntMatrix = self._cells[2] + self._cells[3]
        return t + t.T

    def battles(self) -> IntMatrix:
        """``battles[i, j]``: all battles between i and j; symmetric."""
        per_side: IntMatrix = self._cells.sum(axis=0)
        return per_side + per_side.T

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PairCounts):
            return NotImplemented
        return self._models == other._models and bool(np.array_equal(self._cells, other._cells))

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"PairCounts(models={len(self._models)}, votes={self.total})"
