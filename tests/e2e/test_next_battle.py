"""Next-battle sampling end to end, the three services as processes on the real broker and
Redis: votes in, the worker's samplers from the live fit, pairs served with signed tokens, votes
bringing them back tallied by policy; forged, replayed and mismatched tokens counted unsampled,
never refused."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from services.demo.__main__ import stream_votes
from services.demo.arena import SyntheticArena
from shared.keys import KeyLayout
from tests.support.infra import Infra, service_env
from tests.support.processes import ServiceProcess, running_stack
from tests.support.wait import wait_until

STRENGTHS = {"atlas-7b": 1000, "boreal-13b": 1080, "cirrus-34b": 1160, "dynamo-70b": 1240,
             "ember-405b": 1320, "fjord-max": 1400}
SECRET = "test-sampling-secret-of-this-test"


@pytest.fixture
async def stack(infra: Infra, prefix: str) -> AsyncIterator[dict[str, ServiceProcess]]:
    env = service_env(infra, prefix, PODIUM_SAMPLING_SECRET=SECRET,
                      PODIUM_RATING_SAMPLING_INTERVAL_S="0", PODIUM_API_SAMPLING_CACHE_S="0",
                      PODIUM_RATING_BATCH_WITHIN_S="0.02")
    async with running_stack(env, prefix) as services:
        yield services


def _forged(token: str) -> str:
    """The token with its claim changed (the policy) and the signature kept."""
    body, _, tag = token.partition(".")
    claim = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    changed = claim.replace(b'"p":"active"', b'"p":"uniform"')
    assert changed != claim
    return base64.urlsafe_b64encode(changed).rstrip(b"=").decode() + "." + tag


async def test_pairs_from_the_live_fit_and_tokens_tallied_by_policy(
    stack: dict[str, ServiceProcess], infra: Infra, prefix: str,
    redis_client: aioredis.Redis,
) -> None:
    arena = SyntheticArena(strengths=dict(STRENGTHS), seed=7, tie_rate=0.1)
    votes = list(arena.votes(1500))
    async with httpx.AsyncClient(base_url=stack["ingest"].url, timeout=30) as ingest, \
            httpx.AsyncClient(base_url=stack["api"].url, timeout=10) as api:
        for start in range(0, len(votes), 500):
            r = await ingest.post("/v1/votes/batch", json=votes[start:start + 500])
            assert r.status_code == 202, r.text

        async def board_votes() -> int:
            r = await api.get("/v1/leaderboards/text/overall")
            return int(r.json()["votes"]) if r.status_code == 200 else -1

        async def battles_of_all_votes() -> dict[str, Any] | None:
            if await board_votes() != len(votes):
                return None
            r = await api.get("/v1/arenas/text/next-battle", params={"n": 50})
            return r.json() if r.status_code == 200 else None

        served = await wait_until(battles_of_all_votes, 60, "next-battle from the full fit")
        assert served["board"] == "text/overall" and served["policy"] == "active"
        assert len(served["pairs"]) == 50
        for pair in served["pairs"]:
            assert {pair["model_a"], pair["model_b"]} <= set(STRENGTHS)
            assert pair["model_a"] != pair["model_b"]
            assert pair["reason"] in {"information_gain", "new_model_boost",
                                      "exploration_floor"}
            assert 0 < pair["probability"] <= 1 and pair["sampling_token"]

        # a category board of the arena, and bad input
        r = await api.get("/v1/arenas/text/next-battle",
                          params={"category": votes[0]["categories"][0]
                                  if votes[0]["categories"] else "coding", "n": 3})
        assert r.status_code == 200 and len(r.json()["pairs"]) == 3
        assert (await api.get("/v1/arenas/nope/next-battle")).status_code == 404
        r = await api.get("/v1/arenas/text/next-battle", params={"category": "no-such"})
        assert r.status_code == 404 and "no board text/no-such" in r.json()["detail"]
        for params in ({"n": 0}, {"n": 51}, {"n": "x"}, {"category": "Bad!"},
                       {"category": "coding", "language": "en"}):
            r = await api.get("/v1/arenas/text/next-battle", params=params)
            assert r.status_code == 422, (params, r.text)
            assert r.json()["detail"][0]["msg"]

        pair = served["pairs"][0]
        token = pair["sampling_token"]
        other = next(p for p in served["pairs"]
                     if {p["model_a"], p["model_b"]} != {pair["model_a"], pair["model_b"]})

        def vote(vote_id: str, token: str, models: dict[str, Any] = pair) -> dict[str, Any]:
            return {"vote_id": vote_id, "arena": "text", "model_a": models["model_a"],
                    "model_b": models["model_b"], "winner": "model_a", "sampling_token": token}

        cast = [vote("sampled-1", token),                  # valid: tallied as active
                vote("replayed-1", token),                 # the same token again: a replay
                vote("forged-1", _forged(token)),          # claim changed: forged
                vote("mismatched-1", token, other),        # another pair's vote: mismatched
                vote("garbled-1", "not-a-token")]          # unreadable: forged
        for v in cast:  # single votes: ingest's fast path
            r = await ingest.post("/v1/votes", json=v)
            assert r.status_code == 202, r.text
        r = await ingest.post("/v1/votes", json=cast[0])  # a retry: a duplicate, not a replay
        assert r.status_code == 202 and r.json()["duplicates"] == ["sampled-1"]

        tally_key = KeyLayout(prefix).sampling_tally("text")
        expected = {b"overall|active": b"1", b"unsampled|replayed": b"1",
                    b"unsampled|forged": b"2", b"unsampled|mismatched": b"1"}

        async def tallied() -> bool:
            return bool(await redis_client.hgetall(tally_key) == expected)

        await wait_until(tallied, 30, f"the sampling tally {expected}")
        # every one of them counted on the board, none refused
        await wait_until(lambda: _equals(board_votes, len(votes) + len(cast)), 30,
                         "the token votes counted")

        # the sampling report: the tally by policy, and shares against uniform
        r = await api.get("/v1/leaderboards/text/overall/sampling")
        assert r.status_code == 200, r.text
        report = r.json()
        assert report["tokens"] == {"by_policy": {"active": 1}, "unsampled_arena": {
            "replayed": 1, "forged": 2, "mismatched": 1}}
        models = report["models"]
        assert {m["name"] for m in models} == set(STRENGTHS)
        assert sum(m["battles"] for m in models) == 2 * (len(votes) + len(cast))
        assert all(m["uniform_share"] == pytest.approx(1 / 6, abs=1e-5) for m in models)
        assert sum(m["policy_share"] for m in models) == pytest.approx(1.0, abs=1e-4)
        assert sum(m["share"] for m in models) == pytest.approx(1.0, abs=1e-4)
        assert report["licenses"][0]["battles"] == 2 * (len(votes) + len(cast))  # unknown
        assert (await api.get("/v1/leaderboards/nope/overall/sampling")).status_code == 404

    # the demo stream asking next-battle for every battle (make run with PODIUM_DEMO_SAMPLED)
    sent = await stream_votes(stack["ingest"].url, rate=10_000, batch=50, total=200, seed=3,
                              api_url=stack["api"].url)
    assert sent == 200

    async def demo_tallied() -> bool:
        field = await redis_client.hget(tally_key, "overall|active")
        return field == b"201"

    await wait_until(demo_tallied, 30, "the demo's 200 sampled votes tallied under active")


async def _equals(probe: Any, value: int) -> bool:
    return bool(await probe() == value)
