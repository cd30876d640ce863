"""Benchmark of the style-controlled fit (not a test): 2M battles x 300 models, warm refit.

    /tmp/v/bin/python bench/style_bench.py [--arena-python /tmp/arena-venv/bin/python]
                                           [--battles 2000000] [--arena-battles N]

Measures: the battle store's memory per million battles (in RAM and encoded), encode/decode
time; a cold fit; a warm refit after 0.5% new battles (the cadence refit); and, when an
arena-rank interpreter is given (or PODIUM_ARENA_RANK_PYTHON is set), arena-rank's
ContextualBradleyTerry fit + sandwich on the same battles, after its JIT warm-up, three ways:
cold (how it is normally run), warm-started from its own fit of the older battles (its L-BFGS
starts from ``model.params``) at its default stopping rules, and warm-started run to
convergence (``ftol=1e-12, gtol=1e-10``), the accuracy Podium's Newton reaches.
BLAS is pinned to one thread (see bench/RESULTS.md).
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
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from services.rating.engine import BattleColumns, ContextualFit, fit_contextual  # noqa: E402
from tests.unit.engine.synthetic import synthetic_style_battles  # noqa: E402

N_MODELS = 300
NEW_SHARE = 0.005
CONVERGED = {"ftol": 1e-12, "gtol": 1e-10}
SCRIPT = ROOT / "tests" / "reference" / "arena_rank_contextual_fit.py"


def _timed(run: Any) -> tuple[float, Any]:
    start = time.perf_counter()
    result = run()
    return time.perf_counter() - start, result


def _store(block: BattleColumns) -> None:
    million = len(block) / 1e6
    encode_s, data = _timed(block.to_bytes)
    decode_s, again = _timed(lambda: BattleColumns.from_bytes(data))
    assert again == block
    print(
        f"battle store: {block.nbytes() / million / 2**20:.1f} MiB per million battles in RAM, "
        f"{len(data) / million / 2**20:.1f} MiB per million encoded "
        f"({len(data) / len(block):.1f} bytes/battle); encode {encode_s * 1e3:.0f} ms, "
        f"decode {decode_s * 1e3:.0f} ms for {len(block):,} battles"
    )


def _arena_rank(python: str, block: BattleColumns, extra: dict[str, Any]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "battles.npz"
        np.savez(
            path,
            models=np.array(block.models),
            features=np.array(block.features),
            model_a=block.model_a,
            model_b=block.model_b,
            outcome=block.outcome,
            style_a=block.style_a,
            style_b=block.style_b,
        )
        request = {"npz": str(path), "repeat": 2, **extra}
        done = subprocess.run(
            [python, str(SCRIPT)],
            input=json.dumps(request),
            capture_output=True,
            text=True,
            timeout=3600,
            check=True,
        )
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def _head(block: BattleColumns, n: int) -> BattleColumns:
    head = BattleColumns(block.features, capacity=n)
    head.extend_indexed(
        block.model_a[:n],
        block.model_b[:n],
        block.outcome[:n],
        block.style_a[:n],
        block.style_b[:n],
        block.models,
    )
    return head


def _split(block: BattleColumns, n: int) -> tuple[BattleColumns, BattleColumns]:
    """The first ``n`` battles, and the rest: one world, old battles and new ones."""
    tail = BattleColumns(block.features)
    tail.extend_indexed(
        block.model_a[n:],
        block.model_b[n:],
        block.outcome[n:],
        block.style_a[n:],
        block.style_b[n:],
        block.models,
    )
    return _head(block, n), tail


def _gap(fit: ContextualFit, reference: dict[str, Any]) -> tuple[float, float]:
    assert list(fit.board.models) == reference["competitors"]
    points = float(np.max(np.abs(fit.board.scores - np.asarray(reference["ratings"]))))
    relative = float(np.max(np.abs(fit.beta / np.asarray(reference["coeffs"]) - 1.0)))
    return points, relative


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--battles", type=int, default=2_000_000)
    parser.add_argument("--arena-battles", type=int, default=0, help="default: --battles")
    parser.add_argument("--arena-python", default=os.environ.get("PODIUM_ARENA_RANK_PYTHON"))
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    n_new = int(args.battles * NEW_SHARE)
    build_s, everything = _timed(
        lambda: synthetic_style_battles(N_MODELS, args.battles + n_new, seed=0, skew=1.0)
    )
    block, new = _split(everything, args.battles)
    print(
        f"board: {N_MODELS} models, {len(block):,} battles with 4 style features "
        f"(built in {build_s:.1f} s); refit after {n_new:,} new battles"
    )
    _store(block)

    cold_s, cold = _timed(lambda: fit_contextual(block))
    print(f"cold fit + sandwich CIs: {cold_s:.2f} s ({cold.board.iterations} Newton iterations)")
    block.extend(new)
    warm_runs = []
    for _ in range(args.repeat):
        seconds, warm = _timed(lambda: fit_contextual(block, warm_start=cold))
        warm_runs.append((seconds, warm.board.iterations))
    warm_s = statistics.median(s for s, _ in warm_runs)
    print(
        f"warm refit + sandwich CIs on {len(block):,} battles: {warm_s:.2f} s median "
        f"(runs {', '.join(f'{s:.2f}' for s, _ in warm_runs)} s; iterations "
        f"{[i for _, i in warm_runs]}) target <= 2 s"
    )
    print(
        "coefficients: "
        + ", ".join(f"{name} {c.value:+.4f}" for name, c in warm.coefficients.items())
    )

    if not args.arena_python:
        print("arena-rank: skipped (no --arena-python / PODIUM_ARENA_RANK_PYTHON)")
        return
    _compare_with_arena_rank(args, block, warm_s, warm)


def _compare_with_arena_rank(
    args: argparse.Namespace, block: BattleColumns, warm_s: float, warm: ContextualFit
) -> None:
    """arena-rank's fit of the same battles (or a prefix: ``--arena-battles``), timed three
    ways, against Podium's warm refit."""
    n_arena = args.arena_battles or len(block)
    if n_arena < len(block):
        # a prefix of the same board: refit Podium on it for the comparison
        part = _head(block, n_arena)
        warm_from = int(n_arena / (1 + NEW_SHARE))
        previous = fit_contextual(_head(block, warm_from))
        ours_s, ours = _timed(lambda: fit_contextual(part, warm_start=previous))
    else:
        part, warm_from, ours_s, ours = block, args.battles, warm_s, warm
    modes = [
        ("cold (its usual fit), default stopping rules", {}),
        ("warm-started, default stopping rules", {"warm_from": warm_from}),
        ("warm-started, run to convergence", {"warm_from": warm_from, **CONVERGED}),
    ]
    print(f"arena-rank ContextualBradleyTerry fit + sandwich on the same {len(part):,} battles:")
    for label, extra in modes:
        reference = _arena_rank(args.arena_python, part, extra)
        arena_s = statistics.median(reference["seconds"])
        points, relative = _gap(ours, reference)
        print(
            f"  {label}: {arena_s:.2f} s median (runs "
            f"{', '.join(f'{s:.2f}' for s in reference['seconds'])} s; first run incl. JIT "
            f"{reference['seconds_first']:.1f} s; from_pandas "
            f"{reference['seconds_dataset']:.1f} s not timed); Podium's warm refit "
            f"({ours_s:.2f} s) is {arena_s / ours_s:.1f}x faster; max score gap "
            f"{points:.4f} points, coefficients {relative:.3%}"
        )


if __name__ == "__main__":
    main()
