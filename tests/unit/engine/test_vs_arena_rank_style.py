"""The style-controlled fit against arena-rank's ContextualBradleyTerry, run in its own venv.

The interpreter of that venv comes from PODIUM_ARENA_RANK_PYTHON (as test_vs_arena_rank.py).
As there, the exact comparison runs arena-rank's L-BFGS to convergence (``ftol=1e-12,
gtol=1e-10``: same model, loss, weights and CI formula); one test bounds the gap at its
default stopping rules.
"""

from __future__ import annotations

import json
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from services.rating.engine import BattleColumns, FitOptions, StyleOptions, fit_contextual
from tests.support.reference import arena_rank_python
from tests.unit.engine.synthetic import synthetic_style_battles

SCRIPT = Path(__file__).resolve().parents[2] / "reference" / "arena_rank_contextual_fit.py"
POINTS = 0.05  # rating points (issue #9)
COEFFICIENTS = 0.01  # relative (issue #9)
CONVERGED = {"ftol": 1e-12, "gtol": 1e-10}
BATTLES = synthetic_style_battles(n_models=20, n_battles=6000, seed=3, skew=1.0)


def _interpreter() -> str:
    return arena_rank_python()


def _request(block: BattleColumns) -> dict[str, Any]:
    return {
        "models": list(block.models),
        "features": list(block.features),
        "model_a": block.model_a.tolist(),
        "model_b": block.model_b.tolist(),
        "outcome": block.outcome.tolist(),
        "style_a": block.style_a.tolist(),
        "style_b": block.style_b.tolist(),
    }


@cache
def _reference(reweighted: bool, reg: float, converged: bool = True) -> dict[str, Any]:
    request = {**_request(BATTLES), "reweighted": reweighted, "reg": reg}
    if converged:
        request.update(CONVERGED)
    done = subprocess.run(
        [_interpreter(), str(SCRIPT)],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def _assert_match(reference: dict[str, Any], options: StyleOptions, points: float) -> None:
    fit = fit_contextual(BATTLES, options=options)
    board = fit.board
    assert list(board.models) == reference["competitors"]
    for ours, key in (
        (board.scores, "ratings"),
        (board.ci_low, "rating_lower"),
        (board.ci_high, "rating_upper"),
    ):
        gap = float(np.max(np.abs(ours - np.asarray(reference[key]))))
        assert gap < points, f"{key}: max gap {gap:.5f} rating points"
    theirs = np.asarray(reference["coeffs"])
    relative = float(np.max(np.abs(fit.beta / theirs - 1.0)))
    assert relative < COEFFICIENTS, f"coefficients: {fit.beta} vs {theirs}"


@pytest.mark.parametrize(
    ("reweighted", "reg"),
    [(True, 1.0), (False, 1.0), (True, 0.01)],
    ids=["lmarena-defaults", "not-reweighted", "weak-reg"],
)
def test_scores_cis_and_coefficients_match_arena_rank(reweighted: bool, reg: float) -> None:
    options = StyleOptions(board=FitOptions(reweighted=reweighted), reg=reg)
    _assert_match(_reference(reweighted, reg), options, POINTS)


def test_arena_rank_at_its_default_stopping_rules_is_close() -> None:
    _assert_match(_reference(True, 1.0, converged=False), StyleOptions(), 0.1)
