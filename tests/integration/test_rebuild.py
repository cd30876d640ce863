"""Rebuild: replay the votes topic into a fresh key space, check, switch; while votes flow."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from shared.generations import active_layout, read_generations
from shared.keys import KeyLayout
from tests.support.counts import assert_same_standings, expected_counts, standings, stored_counts
from tests.support.infra import ROOT, Infra, service_env
from tests.support.processes import ARTIFACTS, ServiceProcess, running_stack
from tests.support.votes import mixed_votes, post_all
from tests.support.wait import wait_until


@pytest.fixture
async def services(infra: Infra, prefix: str) -> AsyncIterator[dict[str, ServiceProcess]]:
    env = service_env(infra, prefix)
    async with running_stack(env, prefix) as services:
        yield services


async def run_rebuild(infra: Infra, prefix: str) -> str:
    env = {**service_env(infra, prefix), "PYTHONUNBUFFERED": "1"}
    log = ARTIFACTS / f"rebuild-{prefix}.log"
    ARTIFACTS.mkdir(exist_ok=True)
    with log.open("ab") as out:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "services.rating.rebuild", "--progress-every", "0.5",
            cwd=ROOT, env={**__import__("os").environ, **env},
            stdout=subprocess.PIPE, stderr=out,
        )
        stdout, _ = await asyncio.wait_for(proc.communicate(), 180)
    assert proc.returncode == 0, f"rebuild failed; see {log}"
    return stdout.decode()


async def settled(client: aioredis.Redis, keys: KeyLayout, votes: list[dict[str, Any]],
                  api: httpx.AsyncClient) -> None:
    """Wait until the live counts are exactly the votes', every board's standings are refitted
    on them, and the api serves them."""
    want = expected_counts(votes)
    text_total = sum(1 for v in votes if v["arena"] == "text")

    async def done() -> bool:
        if await stored_counts(client, keys) != want:
            return False
        docs = await standings(client, await active_layout(client, keys))
        if {b: d["votes"] for b, d in docs.items()} != {b: c.total() for b, c in want.items()}:
            return False
        r = await api.get("/v1/leaderboards/text/overall")
        return r.status_code == 200 and r.json()["votes"] == text_total

    await wait_until(done, 120, "live counts equal to the acknowledged votes")


async def test_rebuild_reproduces_live_standings_and_switches_under_load(
    services: dict[str, ServiceProcess], infra: Infra, prefix: str,
    redis_client: aioredis.Redis,
) -> None:
    base = KeyLayout(prefix)
    stream = mixed_votes(36_000, seed=3)
    votes: list[dict[str, Any]] = []
    async with (httpx.AsyncClient(base_url=services["ingest"].url, timeout=60) as ingest,
                httpx.AsyncClient(base_url=services["api"].url, timeout=10) as api):
        votes += await post_all(ingest, [next(stream) for _ in range(20_000)])
        await settled(redis_client, base, votes, api)
        live = await standings(redis_client, base)

        # 1. quiet: the rebuilt generation equals the live one, and reads switch to it
        out = await run_rebuild(infra, prefix)
        assert f"{prefix}.g1 is live (was {prefix})" in out
        gens = await read_generations(redis_client, base)
        assert gens.active == base.generation(1) and gens.next is None
        assert_same_standings(live, await standings(redis_client, base.generation(1)))
        r = await api.get("/v1/leaderboards/text/overall")
        assert r.json()["votes"] == live["text/overall"]["votes"]

        # 2. under load: votes keep arriving before, during and after the switch
        async def keep_posting(n: int) -> list[dict[str, Any]]:
            return await post_all(ingest, [next(stream) for _ in range(n)], batch=250)

        during = asyncio.create_task(keep_posting(12_000))
        await run_rebuild(infra, prefix)
        votes += await during
        votes += await keep_posting(4_000)
        assert (await read_generations(redis_client, base)).active == base.generation(2)
        await settled(redis_client, base, votes, api)

        # 3. quiet again: a third generation from the topic equals the live second one
        live = await standings(redis_client, base.generation(2))
        await run_rebuild(infra, prefix)
        assert_same_standings(live, await standings(redis_client, base.generation(3)))
        assert await stored_counts(redis_client, base) == expected_counts(votes)
