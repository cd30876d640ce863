"""How many votes each next-battle policy needs (pure engine: no services).

300 models with true strengths shaped like LMArena's text arena scores (about 1500 at the top,
dense there, ~950 at the bottom); votes drawn from the true Bradley-Terry model on pairs drawn
by each policy (``services/rating/engine/sampling.py``), the sampler rebuilt from the live fit
after every step (as the worker does after its refits). A run stops when the top-10 order is
correct with the 95% CIs of its adjacent pairs separated, or when the mean CI half-width of the
top 20 reaches 5 points. Reported per policy: the median votes over the seeds, the smallest
model share against its floor share, and (active) whether the reweighted fit agrees with the
fit on uniform votes within CI.

    PYTHONPATH=. python bench/sampling_sim.py --seeds 20
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass

import numpy as np

from services.rating.engine import BoardFit, FitOptions, PairCounts, fit_board
from services.rating.engine.sampling import (
    BoardState,
    Policy,
    SamplingOptions,
    build_sampler,
)

FIT = FitOptions(reweighted=True)  # inverse-propensity reweighting, as arena-rank offers


def lmarena_like_scores(m: int, rng: np.random.Generator) -> np.ndarray:
    """True scores (rating points), best first: a concave drop from ~1500 to ~950, with a
    little jitter (the shape of LMArena's text leaderboard in 2025)."""
    rank = np.arange(m) / max(m - 1, 1)
    scores = 1500.0 - 550.0 * rank**0.75 + rng.normal(0.0, 3.0, m)
    return np.sort(scores)[::-1]


@dataclass
class Run:
    votes: int
    done: bool
    min_floor_ratio: float  # smallest (model's share of appearances) / (its floor share)
    fit: BoardFit


def _stopped(fit: BoardFit, truth_order: np.ndarray) -> bool:
    order = fit.order()
    top10 = order[:10]
    if np.array_equal(top10, truth_order[:10]) and np.all(
            fit.ci_low[top10[:-1]] > fit.ci_high[top10[1:]]):
        return True
    top20 = order[:20]
    return float(np.mean((fit.ci_high[top20] - fit.ci_low[top20]) / 2.0)) <= 5.0


def simulate(policy: Policy, seed: int, m: int, options: SamplingOptions, warmup: int,
             growth: float, max_votes: int) -> Run:
    rng = np.random.default_rng(seed)
    truth = lmarena_like_scores(m, np.random.default_rng(10_000 + seed))
    theta_true = (truth - truth.mean()) / FIT.alpha
    names = tuple(f"model-{k:03d}" for k in range(m))
    perm = rng.permutation(m)  # ids do not give the order away
    theta_true = theta_true[perm]
    truth_order = np.argsort(-theta_true, kind="stable")
    cells = np.zeros((4, m, m), np.int64)
    appearances = np.zeros(m)
    floor_share = np.full(m, options.floor / m)  # share of appearances (sums to 1)
    organizations = {name: f"org-{k % 40}" for k, name in enumerate(names)}
    fit: BoardFit | None = None
    total, batch = 0, warmup
    while True:
        counts = PairCounts(names, cells)
        theta = fit.theta if fit is not None else np.zeros(m)
        state = BoardState.of(counts, theta, organizations=organizations)
        sampler = build_sampler(state, policy if fit is not None else "uniform", options)
        per_pair = rng.multinomial(batch, sampler.probability)
        i, j = sampler.first, sampler.second
        p_win = 1.0 / (1.0 + np.exp(-(theta_true[i] - theta_true[j])))
        wins = rng.binomial(per_pair, p_win)
        np.add.at(cells[0], (i, j), wins)
        np.add.at(cells[1], (i, j), per_pair - wins)
        np.add.at(appearances, i, per_pair)
        np.add.at(appearances, j, per_pair)
        total += batch
        fit = fit_board(PairCounts(names, cells), FIT, warm_start=fit)
        if _stopped(fit, truth_order) or total >= max_votes:
            ratio = float(np.min(appearances / (2.0 * total) / floor_share))
            return Run(total, total < max_votes or _stopped(fit, truth_order), ratio, fit)
        batch = max(1000, int(total * growth))


def _agreement(active: BoardFit, uniform: BoardFit) -> float:
    """Share of models whose active-sampled (reweighted) score lies within the 95% CI of the
    difference from the uniform-sampled score."""
    se = np.sqrt(active.std_err**2 + uniform.std_err**2)
    return float(np.mean(np.abs(active.scores - uniform.scores) <= 1.96 * se))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--models", type=int, default=300)
    parser.add_argument("--floor", type=float, default=0.1)
    parser.add_argument("--warmup", type=int, default=30_000)
    parser.add_argument("--growth", type=float, default=0.08,
                        help="each step adds this fraction of the votes so far")
    parser.add_argument("--max-votes", type=int, default=20_000_000)
    args = parser.parse_args()
    options = SamplingOptions(floor=args.floor)
    results: dict[str, list[Run]] = {"uniform": [], "active": []}
    agreement = []
    started = time.perf_counter()
    for seed in range(args.seeds):
        runs = {policy: simulate(policy, seed, args.models, options, args.warmup, args.growth,
                                 args.max_votes) for policy in ("uniform", "active")}
        for policy, run in runs.items():
            results[policy].append(run)
        agreement.append(_agreement(runs["active"].fit, runs["uniform"].fit))
        print(f"seed {seed}: uniform {runs['uniform'].votes:,} active {runs['active'].votes:,} "
              f"(active floor ratio {runs['active'].min_floor_ratio:.2f}, "
              f"agreement {agreement[-1]:.3f})", flush=True)
    medians = {p: statistics.median(r.votes for r in runs) for p, runs in results.items()}
    saving = 1.0 - medians["active"] / medians["uniform"]
    print(f"\n{args.models} models, {args.seeds} seeds, floor {args.floor}, "
          f"{time.perf_counter() - started:.0f} s")
    for policy, done in results.items():
        print(f"{policy:8s} median votes {medians[policy]:,.0f}  all stopped: "
              f"{all(r.done for r in done)}  min share / floor share: "
              f"{min(r.min_floor_ratio for r in done):.2f}")
    print(f"active needs {saving:.0%} fewer votes (target >= 30%)")
    print(f"active (reweighted) vs uniform fit within 95% CI: median "
          f"{statistics.median(agreement):.1%} of models, worst seed {min(agreement):.1%}")


if __name__ == "__main__":
    main()
