"""Fit LMArena's arena-rank BradleyTerry; run by the arena-rank venv's python, not Podium's.

stdin: JSON object with
  "battles": [[model_a, model_b, winner], ...]        -- goes through PairDataset.from_pandas
  or "triples": [[model_a, model_b, winner, count], ...]  -- aggregated rows (see _from_triples)
  "reweighted": bool (default false)
  "significance_level": float (default 0.05)
  "resamples": optional [[[model_a, model_b, winner, count], ...], ...]: bootstrap resamples
      of the votes, fitted with arena-rank's own fit_single_bootstrap_sample
  "ftol", "gtol", "max_iter": optional L-BFGS stopping rules (arena-rank's defaults: 1e-9,
      1e-9, 1000; its ftol stops ~0.03 rating points short of the optimum on a 4k-vote board)
  "repeat": optional int: time fit + sandwich this many times after a first (JIT) run
stdout: JSON {"competitors", "ratings", "rating_lower", "rating_upper",
              ["boot_lower", "boot_upper"], ["seconds_first", "seconds"]}
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import jax.numpy as jnp
import numpy as np
import pandas as pd
from arena_rank.models.bradley_terry import BradleyTerry, fit_single_bootstrap_sample
from arena_rank.utils.data_utils import PairDataset, default_outcome_map


def _from_triples(triples: list[list[Any]], reweighted: bool) -> PairDataset:
    """The PairDataset from_pandas would build from these rows repeated ``count`` times.

    from_pandas first reduces battles to unique (a, b, outcome) rows with counts; this does
    the same reduction from counts (used by the benchmark: 10M battles are too many to ship
    as JSON, and the reduction is not part of the fit being compared).
    """
    competitors = sorted({str(t[0]) for t in triples} | {str(t[1]) for t in triples})
    index = {name: k for k, name in enumerate(competitors)}
    rows: dict[tuple[int, int, float], float] = {}
    for a, b, winner, count in triples:
        if count:
            key = (index[a], index[b], default_outcome_map(winner))
            rows[key] = rows.get(key, 0.0) + float(count)
    keys = sorted(rows)
    matchups = np.array([[k[0], k[1]] for k in keys], dtype=np.int32)
    outcomes = np.array([k[2] for k in keys], dtype=np.float64)
    counts = np.array([rows[k] for k in keys], dtype=np.float64)
    lo, hi = np.minimum(matchups[:, 0], matchups[:, 1]), np.maximum(matchups[:, 0], matchups[:, 1])
    pair_key = lo.astype(np.int64) * len(competitors) + hi
    _, inverse = np.unique(pair_key, return_inverse=True)
    pair_counts = np.bincount(inverse, weights=counts)[inverse]
    min_pair_count = 50
    weights = 1.0 / np.maximum(pair_counts, min_pair_count) if reweighted else np.ones_like(counts)
    return PairDataset(
        competitors=competitors,
        pairs=jnp.array(matchups),
        outcomes=jnp.array(outcomes),
        counts=jnp.array(counts),
        weights=jnp.array(weights),
        opt_weights=jnp.array(weights * counts),
    )


def _dataset(request: dict[str, Any]) -> PairDataset:
    reweighted = bool(request.get("reweighted", False))
    if "battles" in request:
        df = pd.DataFrame(request["battles"], columns=["model_a", "model_b", "winner"])
        return PairDataset.from_pandas(df, reweighted=reweighted)
    return _from_triples(request["triples"], reweighted)


def _fit(
    dataset: PairDataset, significance_level: float, solver: dict[str, Any]
) -> tuple[BradleyTerry, dict[str, Any]]:
    model = BradleyTerry(n_competitors=len(dataset.competitors), **solver)
    results = model.compute_ratings_and_cis(
        dataset, significance_level=significance_level, ci_method="sandwich"
    )
    results["ratings"].block_until_ready()
    return model, results


def _bootstrap(
    model: BradleyTerry, dataset: PairDataset, resamples: list[Any], significance_level: float
) -> tuple[list[float], list[float]]:
    """arena-rank's bootstrap (compute_ratings_and_cis, ci_method="bootstrap") on given draws."""
    pairs = np.asarray(dataset.pairs).tolist()
    outcomes = np.asarray(dataset.outcomes).tolist()
    row_of = {
        (int(a), int(b), float(y)): k
        for k, ((a, b), y) in enumerate(zip(pairs, outcomes, strict=True))
    }
    index = dataset.competitor_to_index
    samples = []
    for cells in resamples:
        boot_counts = np.zeros(len(row_of), dtype=np.float64)
        for a, b, winner, count in cells:
            boot_counts[row_of[(index[a], index[b], default_outcome_map(winner))]] += count
        params = fit_single_bootstrap_sample(jnp.array(boot_counts), model, dataset)
        samples.append(np.asarray(params["ratings"]) * model.alpha + model.init_rating)
    scaled = jnp.array(np.vstack(samples))
    lower = jnp.quantile(scaled, significance_level / 2.0, axis=0)
    upper = jnp.quantile(scaled, 1.0 - significance_level / 2.0, axis=0)
    return np.asarray(lower).tolist(), np.asarray(upper).tolist()


def main() -> None:
    request = json.load(sys.stdin)
    significance_level = float(request.get("significance_level", 0.05))
    solver = {key: request[key] for key in ("ftol", "gtol", "max_iter") if key in request}
    start = time.perf_counter()
    dataset = _dataset(request)
    model, results = _fit(dataset, significance_level, solver)
    seconds_first = time.perf_counter() - start
    out: dict[str, Any] = {
        "competitors": list(results["competitors"]),
        "ratings": np.asarray(results["ratings"]).tolist(),
        "rating_lower": np.asarray(results["rating_lower"]).tolist(),
        "rating_upper": np.asarray(results["rating_upper"]).tolist(),
    }
    if request.get("resamples"):
        out["boot_lower"], out["boot_upper"] = _bootstrap(
            model, dataset, request["resamples"], significance_level
        )
    repeat = int(request.get("repeat", 0))
    if repeat:
        timings = []
        for _ in range(repeat):
            start = time.perf_counter()
            _fit(dataset, significance_level, solver)
            timings.append(time.perf_counter() - start)
        out["seconds_first"] = seconds_first
        out["seconds"] = timings
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
