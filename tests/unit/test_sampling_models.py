"""What the worker's sampler writer takes from the registry (services/rating/sampling_models.py):
deprecated models are not eligible (read defensively: the flag may not exist yet), organizations
feed the cap."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np

from services.rating.engine import FitOptions, PairCounts, fit_board
from services.rating.engine.sampling import SamplingOptions
from services.rating.sampling_models import board_state, sampler_documents
from shared.sampling_model import PairSampler


def _counts() -> PairCounts:
    names = ["a", "b", "c", "d"]
    cells = np.zeros((4, 4, 4), np.int64)
    i, j = np.triu_indices(4, 1)
    cells[0, i, j], cells[1, i, j] = 6, 4
    return PairCounts(names, cells)


def test_deprecated_models_are_left_out_and_a_missing_flag_means_not_deprecated() -> None:
    counts = _counts()
    fit = fit_board(counts, FitOptions())
    registry: dict[str, Any] = {
        "a": SimpleNamespace(organization="org-1", deprecated=True),
        "b": SimpleNamespace(organization="org-1"),  # no flag at all
        "c": SimpleNamespace(organization=None, deprecated=False),
    }  # "d": not registered
    state = board_state(counts, fit, registry)
    assert state.eligible.tolist() == [False, True, True, True]
    assert state.organizations == ("org-1", "org-1", None, None)
    documents = sampler_documents(state, SamplingOptions())
    assert set(documents) == {"uniform", "active"}
    for raw in documents.values():
        sampler = PairSampler.decode(raw)
        assert sampler.pairs == 3 and sampler.model_shares()[0] == 0.0
