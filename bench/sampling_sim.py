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
from typing import Any

import numpy as np
import orjson

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


TARGET_HALF_WIDTH = 5.0
MAX_JUMP = 0.25  # a step adds at most this fraction of the votes so far (the sampler is rebuilt
# after every step, as the worker rebuilds it every few seconds: coarser steps starve `active`)


def _top20_half_width(fit: BoardFit) -> float:
    top20 = fit.order()[:20]
    return float(np.mean((fit.ci_high[top20] - fit.ci_low[top20]) / 2.0))


def _stopped(fit: BoardFit, truth_order: np.ndarray) -> bool:
    top10 = fit.order()[:10]
    if np.array_equal(top10, truth_order[:10]) and np.all(
            fit.ci_low[top10[:-1]] > fit.ci_high[top10[1:]]):
        return True
    return _top20_half_width(fit) <= TARGET_HALF_WIDTH


def _next_batch(fit: BoardFit, total: int, growth: float) -> int:
    """Votes of the next step: ``growth`` of the votes so far, or half the way to where the
    top-20 half-width would reach the target if it shrank as 1 / sqrt(votes), at most
    ``MAX_JUMP`` (the same rule for every policy: far from the target, fewer refits; near it,
    steps of ``growth``)."""
    ahead = (_top20_half_width(fit) / TARGET_HALF_WIDTH) ** 2 - 1.0
    return max(1000, int(total * max(growth, min(MAX_JUMP, 0.5 * ahead))))


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
        batch = _next_batch(fit, total, growth)


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
    parser.add_argument("--growth", type=float, default=0.05,
                        help="each step adds this fraction of the votes so far")
    parser.add_argument("--max-votes", type=int, default=20_000_000)
    parser.add_argument("--first-seed", type=int, default=0,
                        help="run seeds first-seed .. first-seed + seeds - 1")
    parser.add_argument("--out", help="append one JSON line per seed to this file")
    parser.add_argument("--summarize", nargs="+", metavar="FILE",
                        help="only summarize the JSON lines of earlier runs (--out files)")
    args = parser.parse_args()
    if args.summarize:
        lines = [orjson.loads(line) for name in args.summarize
                 for line in open(name, "rb").read().splitlines() if line.strip()]
        summarize(lines, f"{len(lines)} seeds from {', '.join(args.summarize)}")
        return
    options = SamplingOptions(floor=args.floor)
    lines = []
    started = time.perf_counter()
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        runs = {policy: simulate(policy, seed, args.models, options, args.warmup, args.growth,
                                 args.max_votes) for policy in ("uniform", "active")}
        line = {"seed": seed, "models": args.models, "floor": args.floor,
                "agreement": _agreement(runs["active"].fit, runs["uniform"].fit),
                **{f"{p}_{k}": getattr(r, k) for p, r in runs.items()
                   for k in ("votes", "done", "min_floor_ratio")}}
        lines.append(line)
        print(orjson.dumps(line).decode(), flush=True)
        if args.out:
            with open(args.out, "ab") as out:
                out.write(orjson.dumps(line) + b"\n")
    summarize(lines, f"{args.models} models, {len(lines)} seeds, floor {args.floor}, "
              f"{time.perf_counter() - started:.0f} s")


def summarize(lines: list[dict[str, Any]], title: str) -> None:
    print(f"\n{title}")
    medians = {p: statistics.median(line[f"{p}_votes"] for line in lines)
               for p in ("uniform", "active")}
    for policy, median in medians.items():
        print(f"{policy:8s} median votes {median:,.0f}  all stopped: "
              f"{all(line[f'{policy}_done'] for line in lines)}  min share / floor share: "
              f"{min(line[f'{policy}_min_floor_ratio'] for line in lines):.2f}")
    print(f"active needs {1.0 - medians['active'] / medians['uniform']:.0%} fewer votes "
          f"(target >= 30%)")
    agreement = [line["agreement"] for line in lines]
    print(f"active (reweighted) vs uniform fit within 95% CI: median "
          f"{statistics.median(agreement):.1%} of models, worst seed {min(agreement):.1%}")


if __name__ == "__main__":
    main()
