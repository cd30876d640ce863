"""The three services as processes on the real broker and Redis: votes in, live standings out."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest

from services.api.responses import History
from services.demo.arena import SyntheticArena
from tests.support.infra import Infra, service_env
from tests.support.processes import ServiceProcess, running_stack
from tests.support.standings_contract import (
    assert_served_by_the_contract,
    assert_written_from_the_contract,
    stored_standings,
)
from tests.support.wait import wait_until

TRUE_STRENGTHS = {
    "atlas-7b": 1000,
    "boreal-13b": 1080,
    "cirrus-34b": 1160,
    "dynamo-70b": 1240,
    "ember-405b": 1320,
    "fjord-max": 1400,
}


@pytest.fixture
async def stack(infra: Infra, prefix: str) -> AsyncIterator[dict[str, ServiceProcess]]:
    env = service_env(infra, prefix)
    async with running_stack(env, prefix) as services:
        yield services


def expected_votes(votes: list[dict[str, Any]], view: str) -> Counter[str]:
    per_model: Counter[str] = Counter()
    for v in votes:
        views = ["overall", *v["categories"], f"lang:{v['language']}"]
        if view in views:
            per_model[v["model_a"]] += 1
            per_model[v["model_b"]] += 1
    return per_model


async def test_ten_thousand_votes_flow_into_exact_live_standings(
    stack: dict[str, ServiceProcess], infra: Infra, prefix: str
) -> None:
    arena = SyntheticArena(strengths=dict(TRUE_STRENGTHS), seed=42, tie_rate=0.1)
    votes = list(arena.votes(10_000))
    rng = random.Random(1)
    async with httpx.AsyncClient(base_url=stack["ingest"].url, timeout=60) as ingest:
        for v in votes[:200]:  # single votes
            assert (await ingest.post("/v1/votes", json=v)).status_code == 202
        for start in range(200, len(votes), 700):  # JSON-array and NDJSON batches
            chunk = votes[start : start + 700]
            if rng.random() < 0.5:
                r = await ingest.post("/v1/votes/batch", json=chunk)
            else:
                body = b"\n".join(orjson.dumps(v) for v in chunk)
                r = await ingest.post(
                    "/v1/votes/batch",
                    content=body,
                    headers={"content-type": "application/x-ndjson"},
                )
            assert r.status_code == 202, r.text
            assert len(r.json()["accepted"]) == len(chunk)
        r = await ingest.post("/v1/votes", json={**votes[0], "vote_id": "bad", "winner": "x"})
        assert r.status_code == 422

    async with httpx.AsyncClient(base_url=stack["api"].url, timeout=10) as api:

        async def board_with_all_votes() -> dict[str, Any] | None:
            r = await api.get("/v1/leaderboards/text/overall")
            doc: dict[str, Any] = r.json()
            return doc if r.status_code == 200 and doc["votes"] == len(votes) else None

        overall = await wait_until(board_with_all_votes, 90, "all 10,000 votes in standings")
        rows = overall["rows"]
        assert {r["model"]: r["votes"] for r in rows} == expected_votes(votes, "overall")
        assert [r["model"] for r in rows] == sorted(
            TRUE_STRENGTHS, key=lambda m: -TRUE_STRENGTHS[m]
        )
        assert [r["rank"] for r in rows] == list(range(1, len(rows) + 1))
        assert all(r["ci_low"] < r["score"] < r["ci_high"] for r in rows)
        # the one contract: the worker's document and the api's answer are shared.standings
        assert_written_from_the_contract(
            await stored_standings(infra.redis_url, prefix, "text", "overall"))
        assert_served_by_the_contract((await api.get("/v1/leaderboards/text/overall")).content)
        assert_served_by_the_contract(
            (await api.get("/v1/leaderboards/text/overall", params={"top": 3})).content)
        model = rows[0]["model"]
        history = (await api.get(f"/v1/models/{model}/history")).content
        History.model_validate_json(history)

        for view in ("coding", "lang:zh"):  # boards of one batch are refitted one by one
            want = expected_votes(votes, view)

            async def board_counts(view: str = view, total: int = sum(want.values())
                                   ) -> dict[str, int] | None:
                doc = (await api.get(f"/v1/leaderboards/text/{view}")).json()
                got = {r["model"]: r["votes"] for r in doc["rows"]}
                return got if sum(got.values()) == total else None

            assert await wait_until(board_counts, 10, f"all votes on text/{view}") == want

        listing = (await api.get("/v1/leaderboards")).json()["boards"]
        names = [b["board"] for b in listing]
        assert names[0] == "text/overall" and "text/coding" in names and "text/lang:en" in names
        assert (await api.get("/v1/leaderboards/text/nope")).status_code == 404
        assert (await api.get("/v1/leaderboards/text/Bad View")).status_code == 422
        page = await api.get("/")
        assert page.status_code == 200 and "Podium" in page.text
