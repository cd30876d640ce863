"""Podium's engine against LMArena's arena-rank, run in its own venv (it pins jax).

The interpreter of that venv comes from PODIUM_ARENA_RANK_PYTHON (the Makefile sets it;
see deploy/reference/requirements-arena-rank.txt).

arena-rank's L-BFGS stops on a relative loss change of 1e-9 (``ftol``), which on these boards
leaves it ~0.03 rating points short of the maximum likelihood (its gradient is still ~1e-6
there; ours is ~1e-12). The exact comparisons therefore run arena-rank with tighter stopping
rules (``ftol=1e-12, gtol=1e-10``: same model, loss, weights and CI formula, only run to
convergence), and one test bounds the gap to arena-rank at its defaults.
"""

from __future__ import annotations

import json
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from services.rating.engine import (
    FitOptions,
    PairCounts,
    bootstrap_ci_from_resamples,
    fit_board,
    resample_counts,
)
from tests.support.reference import arena_rank_python
from tests.unit.engine.synthetic import Battle, counts_of, synthetic_battles

SCRIPT = Path(__file__).resolve().parents[2] / "reference" / "arena_rank_fit.py"
TOLERANCE = 0.01  # rating points
DEFAULTS_TOLERANCE = 0.1  # rating points, arena-rank at its default stopping rules
CONVERGED = {"ftol": 1e-12, "gtol": 1e-10}
BATTLES = synthetic_battles(n_models=20, n_battles=4000, seed=7, tie_rate=0.2, skew=1.0)


def _interpreter() -> str:
    return arena_rank_python()


def _run(request: dict[str, Any]) -> dict[str, Any]:
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


@cache
def _reference(reweighted: bool, converged: bool = True) -> dict[str, Any]:
    solver = CONVERGED if converged else {}
    return _run({"battles": [list(b) for b in BATTLES], "reweighted": reweighted, **solver})


def _cells(counts: PairCounts) -> list[list[object]]:
    return [[a, b, outcome, n] for (a, b, outcome), n in counts.triples().items()]


def _assert_close(
    ours: np.ndarray[Any, Any], theirs: list[float], what: str, tolerance: float = TOLERANCE
) -> None:
    gap = float(np.max(np.abs(ours - np.asarray(theirs))))
    assert gap < tolerance, f"{what}: max gap {gap:.5f} rating points"


@pytest.mark.parametrize("reweighted", [False, True])
def test_scores_and_sandwich_cis_match_arena_rank(reweighted: bool) -> None:
    reference = _reference(reweighted)
    fit = fit_board(counts_of(BATTLES), FitOptions(reweighted=reweighted))
    assert list(fit.models) == reference["competitors"]
    _assert_close(fit.scores, reference["ratings"], "scores")
    _assert_close(fit.ci_low, reference["rating_lower"], "ci_low")
    _assert_close(fit.ci_high, reference["rating_upper"], "ci_high")


@pytest.mark.parametrize("reweighted", [False, True])
def test_arena_rank_at_its_default_stopping_rules_is_close(reweighted: bool) -> None:
    reference = _reference(reweighted, converged=False)
    fit = fit_board(counts_of(BATTLES), FitOptions(reweighted=reweighted))
    _assert_close(fit.scores, reference["ratings"], "scores", DEFAULTS_TOLERANCE)
    _assert_close(fit.ci_low, reference["rating_lower"], "ci_low", DEFAULTS_TOLERANCE)
    _assert_close(fit.ci_high, reference["rating_upper"], "ci_high", DEFAULTS_TOLERANCE)


def test_reweighting_changes_the_board() -> None:
    """Guards the comparison above: the synthetic board has pairs above min_pair_count."""
    plain, reweighted = _reference(False), _reference(True)
    assert np.max(np.abs(np.subtract(plain["ratings"], reweighted["ratings"]))) > 1.0


def test_aggregated_rows_fit_like_battles() -> None:
    """The benchmark feeds arena-rank aggregated rows; they must fit exactly as battles."""
    from_triples = _run({"triples": _cells(counts_of(BATTLES)), "reweighted": True, **CONVERGED})
    reference = _reference(True)
    for key in ("ratings", "rating_lower", "rating_upper"):
        np.testing.assert_allclose(from_triples[key], reference[key], atol=1e-3)


@pytest.mark.parametrize("reweighted", [False, True])
def test_bootstrap_matches_arena_rank_on_the_same_resamples(reweighted: bool) -> None:
    """arena-rank's bootstrap draws with jax's RNG; we hand it our draws instead, through its
    own ``fit_single_bootstrap_sample``, so the percentile bounds must agree exactly."""
    battles: list[Battle] = BATTLES[:2500]
    counts = counts_of(battles)
    options = FitOptions(reweighted=reweighted)
    resamples = list(resample_counts(counts, rounds=20, seed=3))
    reference = _run(
        {
            "battles": [list(b) for b in battles],
            "reweighted": reweighted,
            "resamples": [_cells(sample) for sample in resamples],
            **CONVERGED,
        }
    )
    low, high = bootstrap_ci_from_resamples(counts, options, resamples)
    _assert_close(low, reference["boot_lower"], "bootstrap low")
    _assert_close(high, reference["boot_upper"], "bootstrap high")
