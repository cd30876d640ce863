"""Style-controlled boards with the three services as processes: a model that wins only by
writing longer answers tops the plain board and drops on ``{view}+style``."""

from __future__ import annotations

import math
import random
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.support.infra import Infra, service_env
from tests.support.processes import ServiceProcess, running_stack
from tests.support.standings_contract import (
    assert_served_by_the_contract,
    assert_written_from_the_contract,
    stored_standings,
)
from tests.support.wait import wait_until

MODELS = [f"model-{c}" for c in "abcdefg"] + ["verbose-xl"]  # all of equal strength
VERBOSE = "verbose-xl"
LENGTH_EFFECT = 2.0  # logits per unit of (a - b) / (a + b) in tokens
N_VOTES = 4000


@pytest.fixture
async def stack(infra: Infra, prefix: str) -> AsyncIterator[dict[str, ServiceProcess]]:
    env = service_env(infra, prefix, PODIUM_RATING_STYLE_REFIT_S="1",
                      PODIUM_RATING_STYLE_REG="0.001")
    async with running_stack(env, prefix) as services:
        yield services


def verbose_votes(n: int, seed: int = 9) -> list[dict[str, Any]]:
    """Equal models; the verbose one's answers are 3x longer; voters like length."""
    rng = random.Random(seed)
    votes = []
    for i in range(n):
        a, b = rng.sample(MODELS, 2)
        tokens = {m: int(rng.uniform(150, 250)) * (3 if m == VERBOSE else 1) for m in (a, b)}
        diff = (tokens[a] - tokens[b]) / (tokens[a] + tokens[b])
        p_a = 1.0 / (1.0 + math.exp(-LENGTH_EFFECT * diff))
        votes.append({
            "vote_id": f"style-{i}", "arena": "text", "model_a": a, "model_b": b,
            "winner": "model_a" if rng.random() < p_a else "model_b",
            "style": {"model_a": {"tokens": tokens[a], "lists": rng.randrange(3)},
                      "model_b": {"tokens": tokens[b], "lists": rng.randrange(3)}},
        })
    return votes


async def test_a_model_winning_by_length_drops_on_the_style_board(
    stack: dict[str, ServiceProcess], infra: Infra, prefix: str
) -> None:
    votes = verbose_votes(N_VOTES)
    async with httpx.AsyncClient(base_url=stack["ingest"].url, timeout=60) as ingest:
        for start in range(0, len(votes), 500):
            r = await ingest.post("/v1/votes/batch", json=votes[start : start + 500])
            assert r.status_code == 202, r.text

    async with httpx.AsyncClient(base_url=stack["api"].url, timeout=10) as api:

        async def board(view: str) -> dict[str, Any] | None:
            r = await api.get(f"/v1/leaderboards/text/{view}")
            doc: dict[str, Any] = r.json()
            return doc if r.status_code == 200 and doc["votes"] == N_VOTES else None

        plain = await wait_until(lambda: board("overall"), 90, "all votes on text/overall")
        style = await wait_until(lambda: board("overall+style"), 90,
                                 "all votes on text/overall+style")

        def score_gap(doc: dict[str, Any]) -> tuple[int, float]:
            """The verbose model's rank, and its score above the best of the others."""
            rows = {r["model"]: r for r in doc["rows"]}
            best_other = max(r["score"] for m, r in rows.items() if m != VERBOSE)
            return rows[VERBOSE]["rank"], rows[VERBOSE]["score"] - best_other

        plain_rank, plain_gap = score_gap(plain)
        style_rank, style_gap = score_gap(style)
        assert plain_rank == 1 and plain_gap > 60  # length wins it the plain board
        assert style_gap < plain_gap - 60  # style control takes the length lead away
        assert style_rank > 1 or style_gap < 20
        coefficients = style["style_coefficients"]
        assert coefficients["tokens"]["value"] > 0
        assert coefficients["tokens"]["ci_low"] > 0
        assert "elo" not in style["rows"][0]

        listing = [b["board"] for b in (await api.get("/v1/leaderboards")).json()["boards"]]
        assert "text/overall+style" in listing
        # the documented route (with filters) serves the style board too
        r = await api.get("/v1/leaderboards/text/overall+style", params={"top": 3})
        assert r.status_code == 200 and len(r.json()["rows"]) == 3
        assert "style_coefficients" in r.json()
        # the one contract: the worker's documents and the api's answers are shared.standings
        for view in ("overall", "overall+style"):
            assert_written_from_the_contract(
                await stored_standings(infra.redis_url, prefix, "text", view))
        assert_served_by_the_contract(r.content)
