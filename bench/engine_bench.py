"""Benchmark of the rating engine (not a test): a 300-model board with 10M votes of counts.

    /tmp/v/bin/python bench/engine_bench.py [--arena-python /tmp/arena-venv/bin/python]

Measures: cold fit incl. sandwich CIs; warm refit after 1,000 new votes, and the rank margins
the worker computes after it (``rank_margins``, issue #20); the cost of applying
one vote to the counts at 10 thousand vs 10 million votes so far; and, when an arena-rank
interpreter is given (or PODIUM_ARENA_RANK_PYTHON is set), arena-rank's fit + sandwich on the
same board, in the same run. BLAS is pinned to one thread (see bench/RESULTS.md).
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from services.rating.engine import (  # noqa: E402
    OUTCOMES,
    BoardFit,
    PairCounts,
    fit_board,
    rank_margins,
)
from tests.unit.engine.synthetic import synthetic_counts  # noqa: E402

N_MODELS = 300
N_VOTES = 10_000_000
NEW_VOTES = 1_000


def _median_ms(run: Callable[[], object], repeat: int) -> tuple[float, list[float]]:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times), times


def _new_votes(counts: PairCounts, n: int, seed: int) -> list[tuple[str, str, str]]:
    """Votes drawn like the existing ones (multinomial over the count cells)."""
    rng = np.random.default_rng(seed)
    cells = counts.cells.reshape(-1).astype(np.float64)
    flat = rng.choice(cells.size, size=n, p=cells / cells.sum())
    k, a, b = np.unravel_index(flat, counts.cells.shape)
    models = counts.models
    return [
        (models[i], models[j], OUTCOMES[o])
        for o, i, j in zip(k.tolist(), a.tolist(), b.tolist(), strict=True)
    ]


def bench_fits(counts: PairCounts) -> tuple[BoardFit, dict[str, object]]:
    fit_board(counts)  # first call: imports, page faults
    cold_ms, cold_all = _median_ms(lambda: fit_board(counts), 7)
    fit = fit_board(counts)
    warm_all, iterations, margins_all = [], [], []
    for trial in range(7):
        updated = counts.copy()
        for vote in _new_votes(counts, NEW_VOTES, seed=trial):
            updated.add(*vote)
        start = time.perf_counter()
        refit = fit_board(updated, warm_start=fit)
        warm_all.append((time.perf_counter() - start) * 1e3)
        iterations.append(refit.iterations)
        start = time.perf_counter()
        rank_margins(updated, refit)  # the worker's margin_votes, after each refit
        margins_all.append((time.perf_counter() - start) * 1e3)
    return fit, {
        "cold_fit_ms": cold_ms,
        "cold_fit_all_ms": cold_all,
        "cold_iterations": fit.iterations,
        "warm_refit_ms": statistics.median(warm_all),
        "warm_refit_all_ms": warm_all,
        "warm_iterations": iterations,
        "margins_ms": statistics.median(margins_all),
        "margins_all_ms": margins_all,
    }


def bench_vote_apply(votes_so_far: int, n: int = 200_000) -> float:
    counts = synthetic_counts(N_MODELS, votes_so_far, seed=1)
    votes = _new_votes(synthetic_counts(N_MODELS, 100_000, seed=2), n, seed=3)
    add = counts.add
    start = time.perf_counter()
    for model_a, model_b, outcome in votes:
        add(model_a, model_b, outcome)
    return (time.perf_counter() - start) / n * 1e6


def bench_arena_rank(python: str, counts: PairCounts, fit: BoardFit) -> dict[str, object]:
    triples = [[a, b, o, n] for (a, b, o), n in counts.triples().items()]
    request = {"triples": triples, "repeat": 3}
    done = subprocess.run(
        [python, str(ROOT / "tests" / "reference" / "arena_rank_fit.py")],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "OPENBLAS_NUM_THREADS": "", "OMP_NUM_THREADS": ""},
    )
    out = json.loads(done.stdout)
    assert out["competitors"] == list(fit.models)
    request = {"triples": triples, "ftol": 1e-14, "gtol": 1e-12}
    converged = json.loads(
        subprocess.run(
            [python, str(ROOT / "tests" / "reference" / "arena_rank_fit.py")],
            input=json.dumps(request),
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    return {
        "max_score_gap_converged": float(
            np.max(np.abs(fit.scores - np.asarray(converged["ratings"])))
        ),
        "rows": len(triples),
        "first_run_s": out["seconds_first"],
        "fit_sandwich_ms": statistics.median(out["seconds"]) * 1e3,
        "fit_sandwich_all_ms": [s * 1e3 for s in out["seconds"]],
        "max_score_gap": float(np.max(np.abs(fit.scores - np.asarray(out["ratings"])))),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--arena-python", default=os.environ.get("PODIUM_ARENA_RANK_PYTHON"))
    args = parser.parse_args()

    start = time.perf_counter()
    counts = synthetic_counts(N_MODELS, N_VOTES, seed=0)
    played = int(np.count_nonzero(np.triu(counts.battles(), 1)))
    print(
        f"board: {len(counts)} models, {counts.total:,} votes, {played:,} played pairs, "
        f"{len(counts.triples()):,} non-zero triples (built in {time.perf_counter() - start:.2f} s)"
    )

    fit, figures = bench_fits(counts)
    print(
        f"cold fit + sandwich CIs: {figures['cold_fit_ms']:.1f} ms median "
        f"({figures['cold_iterations']} Newton iterations) target <= 100 ms"
    )
    print(
        f"warm refit after {NEW_VOTES:,} new votes: {figures['warm_refit_ms']:.1f} ms median "
        f"(iterations {figures['warm_iterations']}) target <= 10 ms"
    )
    print(
        f"rank margins (margin_votes) after the warm refit: {figures['margins_ms']:.1f} ms "
        "median"
    )
    for label, key in (("cold", "cold_fit_all_ms"), ("warm", "warm_refit_all_ms"),
                       ("margins", "margins_all_ms")):
        runs = figures[key]
        assert isinstance(runs, list)
        print(f"  {label} runs ms: " + ", ".join(f"{t:.1f}" for t in runs))

    for so_far in (10_000, 10_000_000):
        print(
            f"apply one vote to counts at {so_far:,} votes so far: "
            f"{bench_vote_apply(so_far):.2f} us"
        )

    if args.arena_python:
        ours = figures["cold_fit_ms"]
        assert isinstance(ours, float)
        ref = bench_arena_rank(args.arena_python, counts, fit)
        speedup = float(ref["fit_sandwich_ms"]) / ours  # type: ignore[arg-type]
        print(
            f"arena-rank fit + sandwich on the same {ref['rows']:,} aggregated rows: "
            f"{ref['fit_sandwich_ms']:.0f} ms median after JIT warm-up "
            f"(first run incl. compile {ref['first_run_s']:.1f} s); "
            f"Podium cold fit is {speedup:.0f}x faster (target >= 20x); "
            f"max score gap {ref['max_score_gap']:.4f} points at arena-rank's default "
            f"stopping rules, {ref['max_score_gap_converged']:.4f} run to convergence"
        )
    else:
        print("arena-rank: skipped (no --arena-python / PODIUM_ARENA_RANK_PYTHON)")


if __name__ == "__main__":
    main()
