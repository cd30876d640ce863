"""A board the size and shape of LMArena's published text board (282 models, scores ~1100-1500,
95% CIs from about ±3 to ±40), written to Redis through the worker's own writer: counts drawn
from known strengths, fitted by the engine, turned into the standings and matrices documents
by ``services.rating`` and stored by ``RatingStore`` (votes through the pipeline would take
minutes for the ~400,000 battles such CIs need)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import orjson
import redis.asyncio as aioredis

from services.rating.engine import OUTCOMES, FitOptions, PairCounts, fit_board
from services.rating.read_models import history_point, matrices_document
from services.rating.standings import standings_document
from services.rating.store import RatingStore
from shared.keys import KeyLayout

FAMILIES = ["claude-opus", "claude-sonnet", "gemini", "gpt", "grok", "deepseek", "qwen3",
            "llama", "mistral-medium", "glm", "kimi-k2", "o3", "hunyuan", "command-a"]
VARIANTS = ["", "-preview", "-thinking-32k", "-20250805-thinking-16k", "-instruct-2507",
            "-mini-high"]


def lmarena_model_ids(n: int) -> list[str]:
    """``n`` distinct ids shaped like LMArena's (long, families sharing their first characters:
    ``claude-opus-4-1-20250805-thinking-16k`` and friends)."""
    ids: list[str] = []
    version = 0
    while len(ids) < n:
        for family in FAMILIES:
            for variant in VARIANTS:
                ids.append(f"{family}-{1 + version // 3}-{version % 3}{variant}")
        version += 1
    return sorted(ids[:n])


def lmarena_shaped_counts(n: int = 282, seed: int = 7) -> tuple[PairCounts, str, float]:
    """Counts of ``n`` models with true scores spread over 1100-1500 and very uneven exposure
    (the strongest models play most); also an anchor model and its true score."""
    rng = np.random.default_rng(seed)
    models = lmarena_model_ids(n)
    truth = rng.uniform(1100, 1500, n)
    exposure = np.exp(rng.normal(0.0, 1.1, n)) * np.exp((truth - 1100) / 150)
    battles = rng.poisson(2.5 * np.outer(exposure, exposure) / exposure.mean())
    battles = np.triu(battles, 1)
    p_a = 1 / (1 + 10 ** ((truth[None, :] - truth[:, None]) / 400))
    ties = rng.binomial(battles, 0.15)
    a_wins = rng.binomial(battles - ties, p_a)
    cells = np.zeros((len(OUTCOMES), n, n), dtype=np.int64)
    cells[0] = a_wins
    cells[1] = battles - ties - a_wins
    cells[2] = ties
    return PairCounts(models, cells), models[n // 2], float(truth[n // 2])


async def write_lmarena_board(redis: aioredis.Redis, prefix: str, arena: str, view: str,
                              n: int = 282) -> list[dict[str, Any]]:
    """Fit an LMArena-shaped board and write its standings and matrices as the worker does;
    the rows written."""
    counts, anchor, anchor_score = lmarena_shaped_counts(n)
    fit = fit_board(counts, FitOptions(anchor_model=anchor, anchor_score=anchor_score))
    now = datetime.now(UTC)
    elo = {m: float(v) + 7.0 for m, v in zip(fit.models, fit.scores.tolist(), strict=True)}
    document = standings_document(arena, view, fit, elo, now, None)
    keys = KeyLayout(prefix)
    store = RatingStore(redis, keys)
    await redis.sadd(keys.views(arena), view)
    await store.register_arenas({arena})
    await redis.set(keys.matrices(arena, view),
                    orjson.dumps(matrices_document(arena, view, counts, fit, now)))
    await store.write_standings(arena, view, orjson.dumps(document))
    rows: list[dict[str, Any]] = document["rows"]
    return rows


async def write_busy_history(redis: aioredis.Redis, prefix: str, arena: str, view: str,
                             row: dict[str, Any], points: int = 60) -> None:
    """A model's history as ``history_point`` writes it: a first few points from fits on a
    handful of votes (thousands of points off the board, as a model that had only won gets from
    the regularised fit), then a rank change at every point, ranks alternating between three
    neighbours (labels that would sit on top of each other)."""
    now = datetime.now(UTC)
    key = KeyLayout(prefix).history(arena, view, row["model"])
    for k in range(points):
        at = now - timedelta(seconds=10 * (points - k))
        if k < 4:
            early = {**row, "score": 6400.0 - 50 * k, "ci_low": 5900.0, "ci_high": 6900.0,
                     "rank": 1, "rank_ub": 1, "votes": 3 + k}
            await redis.rpush(key, orjson.dumps(history_point(early, at, True)))
            continue
        wobble = 4.0 * ((k % 3) - 1)
        point = {**row, "score": row["score"] + wobble, "ci_low": row["ci_low"] + wobble,
                 "ci_high": row["ci_high"] + wobble, "rank": row["rank"] + (k % 3) - 1}
        await redis.rpush(key, orjson.dumps(history_point(point, at, True)))
