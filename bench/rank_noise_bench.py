"""How noisy is the rank-change feed? Events per minute in the demo's steady state, and how soon
a real overtake is announced once its confidence intervals separate.

The demo's vote stream (``services/demo``: 30 models with constant hidden strengths, 200
votes/s in requests of 50) is replayed through the worker's own code for its ``text/overall``
board: the counts, ``fit_board`` after every request's batch (the worker refits per batch), and
``rank_changes`` with the worker's ``RankMoves`` (significance and hysteresis). Simulated time,
so the figures do not depend on the machine: they are properties of the rule and the stream.

Counted over minutes ``--from-min``..``--minutes`` (the steady state):
  before     one event per model whose rank changed (the rule before issue #19)
  any        every event now (rank or published rank moved, new, confirmed overtake; damped too)
  separated  the default of the page and of `podium tail`
  published  published-rank moves only

Then one model's strength is raised mid-stream (``--boost``): for every model it overtakes,
the refit where their intervals separate, and the first event heard at the default level that
announces it (the booster's ``separated`` event naming it, or the overtaken model's published
rank moving); the delay is reported in simulated seconds (the live worker adds its refit
latency, see the end-to-end benchmark).

    .venv/bin/python -m bench.rank_noise_bench [--minutes 15 --from-min 10 --window 300]
"""

from __future__ import annotations

import argparse
import os
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # as the worker (services/rating/__main__.py)

from services.demo.arena import DEMO_MODELS, SyntheticArena
from services.rating.engine import FitOptions, PairCounts, fit_board
from services.rating.engine.significance import RankMoves
from services.rating.standings import rank_changes
from shared.events import RankChange, SourcePosition

BOARD = "text/overall"
AT = SourcePosition(topic="bench", partition=0, offset=0)
START = datetime(2026, 12, 2, tzinfo=UTC)


class Replay:
    """The demo stream through the worker's counting, fitting and rank-change code."""

    def __init__(self, rate: float, batch: int, window_s: float, seed: int) -> None:
        self.arena = SyntheticArena(seed=seed)
        self.rate, self.batch = rate, batch
        self.counts = PairCounts()
        self.moves = RankMoves(window_s)
        self.options = FitOptions()
        self.rows: list[dict[str, Any]] = []
        self.fit: Any = None
        self.t = 0.0

    def step(self) -> tuple[list[RankChange], int, list[dict[str, Any]]]:
        """One request's batch: (events, models whose rank changed, the new rows)."""
        for vote in self.arena.votes(self.batch):
            self.counts.add(vote["model_a"], vote["model_b"], vote["winner"])
        self.t += self.batch / self.rate
        self.fit = fit_board(self.counts, self.options, warm_start=self.fit)
        rows = self.fit.rows()
        before = {r["model"]: r["rank"] for r in self.rows}
        moved = sum(1 for r in rows if before.get(r["model"]) != r["rank"])
        now = START + timedelta(seconds=self.t)
        changes = rank_changes(BOARD, self.rows, rows, now, AT, self.moves)
        self.rows = rows
        return changes, moved, rows


def steady_state(replay: Replay, minutes: float, from_min: float) -> dict[str, float]:
    counted: Counter[str] = Counter()
    while replay.t < minutes * 60:
        changes, moved, _ = replay.step()
        if replay.t < from_min * 60:
            continue
        counted["before"] += moved
        for level in ("any", "separated", "published"):
            counted[level] += sum(1 for c in changes if c.heard_at(level))  # type: ignore[arg-type]
    span = minutes - from_min
    return {k: counted[k] / span for k in ("before", "any", "separated", "published")}


def overtake(replay: Replay, model: str, boost: float, minutes: float) -> list[dict[str, Any]]:
    """Raise ``model``'s strength; for each model ahead of it at that moment that it
    overtakes, the time its interval separates above it and the first default-level event."""
    ahead = [r["model"] for r in replay.rows if r["rank"] < next(
        x["rank"] for x in replay.rows if x["model"] == model)]
    replay.arena.strengths[model] += boost
    t0 = replay.t
    separated: dict[str, float] = {}
    announced: dict[str, float] = {}
    while replay.t < t0 + minutes * 60 and len(announced) < len(ahead):
        changes, _, rows = replay.step()
        by_model = {r["model"]: r for r in rows}
        me = by_model[model]
        for other in ahead:
            if other not in separated and me["ci_low"] > by_model[other]["ci_high"]:
                separated[other] = replay.t
        for c in changes:
            if not c.heard_at("separated"):
                continue
            if c.model == model:
                for other in c.passed:
                    announced.setdefault(other, replay.t)
            elif c.model in separated and c.model not in announced:
                announced[c.model] = replay.t  # its published rank moved below the booster
    return [{"overtaken": o, "separated_after_s": round(separated[o] - t0, 1),
             "announced_delay_s": round(announced.get(o, float("nan")) - separated[o], 2)}
            for o in ahead if o in separated]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=15)
    parser.add_argument("--from-min", type=float, default=10)
    parser.add_argument("--window", type=float, default=300.0, help="hysteresis window, s")
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--boost-model", default="glm-4.6")
    parser.add_argument("--boost", type=float, default=80.0)
    args = parser.parse_args()
    assert args.boost_model in DEMO_MODELS
    replay = Replay(args.rate, args.batch, args.window, args.seed)
    per_min = steady_state(replay, args.minutes, args.from_min)
    print(f"demo steady state, {BOARD}, minutes {args.from_min:g}-{args.minutes:g} "
          f"({args.rate:g} votes/s, window {args.window:g} s): events per minute")
    for level, figure in per_min.items():
        print(f"  {level:<10} {figure:8.1f}")
    print(f"overtake: {args.boost_model} +{args.boost:g} at t={replay.t:.0f}s")
    for row in overtake(replay, args.boost_model, args.boost, 10):
        print(f"  passes {row['overtaken']:<24} separated after {row['separated_after_s']:>6}s"
              f"  announced {row['announced_delay_s']}s after that")


if __name__ == "__main__":
    main()
