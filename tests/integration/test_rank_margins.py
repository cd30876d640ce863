"""Rank robustness end to end (issue #20, item 3): votes through ingest and Kafka, the worker's
fit and its ``margin_votes`` in Redis, served by the api's board read (its fast path): a
lopsided lead has a large margin, two near-equal models a small one, the last row none."""

from __future__ import annotations

import random
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from services.rating.engine import FitOptions, PairCounts, fit_board, rank_margins
from tests.support.infra import Infra, service_env
from tests.support.processes import ServiceProcess, running_stack
from tests.support.standings_contract import assert_written_from_the_contract, stored_standings
from tests.support.votes import post_all
from tests.support.wait import wait_until

# (model_a, model_b): (wins of a, wins of b)
RESULTS = {
    ("lead", "twin-a"): (210, 90), ("lead", "twin-b"): (210, 90), ("lead", "tail"): (90, 10),
    ("twin-a", "twin-b"): (201, 199),  # twin-a ahead by two wins
    ("twin-a", "tail"): (240, 60), ("twin-b", "tail"): (240, 60),
}


def board_votes(seed: int) -> list[dict[str, Any]]:
    """The votes of RESULTS, sides and order shuffled, each from its own voter."""
    rng = random.Random(seed)
    votes = []
    for (a, b), (wins_a, wins_b) in RESULTS.items():
        for winner, n in ((a, wins_a), (b, wins_b)):
            for _ in range(n):
                left, right = (a, b) if rng.random() < 0.5 else (b, a)
                votes.append({"vote_id": str(uuid.UUID(int=rng.getrandbits(128))),
                              "arena": "text", "model_a": left, "model_b": right,
                              "winner": "model_a" if winner == left else "model_b",
                              "voter": f"voter-{len(votes)}"})
    rng.shuffle(votes)
    return votes


def engine_margins(votes: list[dict[str, Any]]) -> dict[str, int | None]:
    counts = PairCounts.from_triples(Counter((v["model_a"], v["model_b"], v["winner"])
                                             for v in votes))
    fit = fit_board(counts, FitOptions())
    order = [fit.models[k] for k in fit.order()]
    return dict(zip(order, rank_margins(counts, fit), strict=True))


@pytest.fixture
async def stack(infra: Infra, prefix: str) -> AsyncIterator[dict[str, ServiceProcess]]:
    env = service_env(infra, prefix, PODIUM_RATING_BATCH_WITHIN_S="0.02",
                      PODIUM_RATING_SCREEN_ENABLED="false")
    async with running_stack(env, prefix) as services:
        yield services


async def test_the_board_serves_each_rows_margin_to_the_next(
    stack: dict[str, ServiceProcess], infra: Infra, prefix: str
) -> None:
    votes = board_votes(seed=20)
    async with (httpx.AsyncClient(base_url=stack["ingest"].url, timeout=30) as ingest,
                httpx.AsyncClient(base_url=stack["api"].url, timeout=10) as api):
        await post_all(ingest, votes, batch=500)

        async def board() -> dict[str, Any] | None:
            r = await api.get("/v1/leaderboards/text/overall")
            doc: dict[str, Any] = r.json()
            return doc if r.status_code == 200 and doc["votes"] == len(votes) else None

        doc = await wait_until(board, 60, "every vote on text/overall")
        filtered = (await api.get("/v1/leaderboards/text/overall",
                                  params={"min_votes": 1})).json()

    rows = doc["rows"]
    margins = {row["model"]: row["margin_votes"] for row in rows}
    assert [row["model"] for row in rows] == ["lead", "twin-a", "twin-b", "tail"]
    assert margins["lead"] >= 50  # 420 wins to 180 losses against the twins
    assert 1 <= margins["twin-a"] <= 4  # two wins ahead of twin-b
    assert margins["twin-b"] >= 50
    assert margins["tail"] is None
    # what the engine gives on the same votes (the worker's fit is warm-started: +-1 vote)
    for model, want in engine_margins(votes).items():
        got = margins[model]
        assert (got is None) == (want is None)
        assert got is None or want is None or abs(got - want) <= 1, (margins, want)
    assert {r["model"]: r["margin_votes"] for r in filtered["rows"]} == margins
    assert_written_from_the_contract(await stored_standings(infra.redis_url, prefix, "text",
                                                            "overall"))
