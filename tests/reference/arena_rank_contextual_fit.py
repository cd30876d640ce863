"""Fit LMArena's arena-rank ContextualBradleyTerry (style control); run by the arena-rank venv.

The battles go through the same path as arena-rank's LMArena example notebook: per-side
feature counts -> ``add_style_feature_cols``-style relative differences, standardised with
pandas (ddof=1) -> ``ContextualPairDataset.from_pandas`` (which standardises again, ddof=0,
and computes the inverse-propensity weights) -> ``ContextualBradleyTerry`` with sandwich CIs.

stdin: JSON object with either the columns inline or "npz": a path to an .npz file holding them
  "models": [name, ...]; "features": [name, ...]
  "model_a", "model_b": [index into models, ...]; "outcome": [code, ...] (0 model_a, 1 model_b,
      2 tie, 3 tie_bothbad); "style_a", "style_b": [[count per feature], ...]
  "reweighted" (default true), "min_pair_count" (default 50), "reg" (default 1.0),
  "ftol", "gtol", "max_iter": optional L-BFGS stopping rules,
  "repeat": optional int: time fit + sandwich this many times after a first (JIT) run
  "warm_from": optional int: first fit the leading ``warm_from`` battles, then start every
      timed fit of all battles from those parameters (arena-rank's L-BFGS starts from
      ``model.params``: its own warm start)
stdout: JSON {"competitors", "ratings", "rating_lower", "rating_upper", "coeffs",
              ["seconds_dataset", "seconds_first", "seconds"]}
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import numpy as np
import pandas as pd
from arena_rank.models.contextual_bradley_terry import ContextualBradleyTerry
from arena_rank.utils.data_utils import ContextualPairDataset

WINNERS = np.array(["model_a", "model_b", "tie", "tie_bothbad"])


def _columns(request: dict[str, Any]) -> dict[str, Any]:
    if "npz" in request:
        with np.load(request["npz"], allow_pickle=False) as data:
            return {key: data[key] for key in data.files}
    return {
        key: np.asarray(request[key])
        for key in ("model_a", "model_b", "outcome", "style_a", "style_b", "models", "features")
    }


def _frame(columns: dict[str, Any]) -> tuple[pd.DataFrame, list[str]]:
    models = np.asarray(columns["models"]).astype(str)
    features = [str(f) for f in columns["features"]]
    df = pd.DataFrame(
        {
            "model_a": models[columns["model_a"]],
            "model_b": models[columns["model_b"]],
            "winner": WINNERS[columns["outcome"]],
        }
    )
    style_a = np.asarray(columns["style_a"], dtype=np.int64)
    style_b = np.asarray(columns["style_b"], dtype=np.int64)
    for f, name in enumerate(features):
        # as arena-rank's examples/example_utils.py add_style_feature_cols
        diff = pd.Series(style_a[:, f] - style_b[:, f])
        total = pd.Series(style_a[:, f] + style_b[:, f]).replace(0, 1)
        raw = diff / total
        df[name] = (raw - raw.mean()) / raw.std()
    return df, features


def _fit(
    dataset: ContextualPairDataset,
    n_features: int,
    solver: dict[str, Any],
    start: dict[str, Any] | None = None,
) -> tuple[ContextualBradleyTerry, dict[str, Any]]:
    model = ContextualBradleyTerry(
        n_competitors=len(dataset.competitors), n_features=n_features, **solver
    )
    if start is not None:
        model.params = dict(start)
    results = model.compute_ratings_and_cis(dataset, significance_level=0.05)
    results["ratings"].block_until_ready()
    return model, results


def _dataset(df: pd.DataFrame, features: list[str], request: dict[str, Any]) -> Any:
    return ContextualPairDataset.from_pandas(
        df,
        feature_cols=features,
        reweighted=bool(request.get("reweighted", True)),
        min_pair_count=int(request.get("min_pair_count", 50)),
    )


def _warm_start(
    columns: dict[str, Any], request: dict[str, Any], solver: dict[str, Any], everyone: list[str]
) -> dict[str, Any] | None:
    """Parameters fitted on the leading ``warm_from`` battles, over ``everyone``'s ratings."""
    head = int(request.get("warm_from", 0))
    if not head:
        return None
    names = ("models", "features")
    part = {key: value[:head] for key, value in columns.items() if key not in names}
    df, features = _frame({**columns, **part})
    dataset = _dataset(df, features, request)
    model, _ = _fit(dataset, len(features), solver)
    ratings = np.asarray(model.params["ratings"])
    fitted = dict(zip(dataset.competitors, ratings.tolist(), strict=True))
    start = np.array([fitted.get(name, 0.0) for name in everyone])
    return {"ratings": start, "coeffs": np.asarray(model.params["coeffs"])}


def main() -> None:
    request = json.load(sys.stdin)
    solver = {k: request[k] for k in ("ftol", "gtol", "max_iter", "reg") if k in request}
    columns = _columns(request)
    df, features = _frame(columns)
    everyone = sorted(set(df["model_a"]) | set(df["model_b"]))
    start_params = _warm_start(columns, request, solver, everyone)
    start = time.perf_counter()
    dataset = _dataset(df, features, request)
    seconds_dataset = time.perf_counter() - start
    _, results = _fit(dataset, len(features), solver, start_params)
    seconds_first = time.perf_counter() - start
    out: dict[str, Any] = {
        "competitors": list(results["competitors"]),
        "ratings": np.asarray(results["ratings"]).tolist(),
        "rating_lower": np.asarray(results["rating_lower"]).tolist(),
        "rating_upper": np.asarray(results["rating_upper"]).tolist(),
        "coeffs": np.asarray(results["coeffs"]).tolist(),
    }
    repeat = int(request.get("repeat", 0))
    if repeat:
        timings = []
        for _ in range(repeat):
            start = time.perf_counter()
            _fit(dataset, len(features), solver, start_params)
            timings.append(time.perf_counter() - start)
        out["seconds_dataset"] = seconds_dataset
        out["seconds_first"] = seconds_first
        out["seconds"] = timings
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
