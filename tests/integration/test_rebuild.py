"""Rebuild: replay the votes topic into a fresh key space, check, switch; while votes flow."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
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


async def run_rebuild(infra: Infra, prefix: str, timeout: float = 180) -> str:
    env = {**service_env(infra, prefix), "PYTHONUNBUFFERED": "1"}
    log = ARTIFACTS / f"rebuild-{prefix}.log"
    ARTIFACTS.mkdir(exist_ok=True)
    with log.open("ab") as out:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "services.rating.rebuild", "--progress-every", "0.5",
            cwd=ROOT, env={**__import__("os").environ, **env},
            stdout=subprocess.PIPE, stderr=out,
        )
        try:
            stdout, _ = await asyncio.wait_for(proc.communicate(), timeout)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise
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


async def post_scores(ingest: httpx.AsyncClient) -> None:
    for model, score in (("alpha-1", 61.5), ("beta-2", 70.25), ("gamma-3", 55.0)):
        r = await ingest.post("/v1/scores", json={"model": model, "benchmark": "gpqa",
                                                  "score": score, "source": "paper"})
        assert r.status_code == 202, r.text


async def gpqa_rows(api: httpx.AsyncClient, want: int) -> list[dict[str, Any]]:
    async def rows() -> list[dict[str, Any]] | None:
        r = await api.get("/v1/leaderboards/bench/gpqa")
        found: list[dict[str, Any]] = r.json()["rows"] if r.status_code == 200 else []
        return found if len(found) == want else None

    return await wait_until(rows, 60, f"bench/gpqa with {want} rows")


async def test_rebuild_keeps_the_benchmark_boards(
    services: dict[str, ServiceProcess], infra: Infra, prefix: str,
    redis_client: aioredis.Redis,
) -> None:
    """Votes and scores: the rebuilt generation has the bench boards too (it had 0 rows)."""
    base = KeyLayout(prefix)
    stream = mixed_votes(2_000, seed=5)
    votes = [next(stream) for _ in range(2_000)]
    async with (httpx.AsyncClient(base_url=services["ingest"].url, timeout=60) as ingest,
                httpx.AsyncClient(base_url=services["api"].url, timeout=10) as api):
        votes = await post_all(ingest, votes)
        await settled(redis_client, base, votes, api)  # (vote boards only)
        await post_scores(ingest)
        before = await gpqa_rows(api, 3)
        out = await run_rebuild(infra, prefix)
        assert f"{prefix}.g1 is live (was {prefix})" in out
        assert await gpqa_rows(api, 3) == before
        assert (await api.get("/v1/leaderboards/text/overall")).json()["votes"] == sum(
            1 for v in votes if v["arena"] == "text")
        # a score after the switch lands on the live generation's board
        r = await ingest.post("/v1/scores", json={"model": "delta-4", "benchmark": "gpqa",
                                                  "score": 80.0, "source": "paper"})
        assert r.status_code == 202, r.text
        assert (await gpqa_rows(api, 4))[0]["model"] == "delta-4"


async def test_rebuild_with_scores_only(
    services: dict[str, ServiceProcess], infra: Infra, prefix: str,
) -> None:
    """An empty votes topic, scores only: the rebuild switches at once (it waited 600 s for the
    bench fence, then failed) and keeps the board."""
    async with (httpx.AsyncClient(base_url=services["ingest"].url, timeout=60) as ingest,
                httpx.AsyncClient(base_url=services["api"].url, timeout=10) as api):
        await post_scores(ingest)
        before = await gpqa_rows(api, 3)
        started = time.monotonic()
        out = await run_rebuild(infra, prefix, timeout=60)
        assert f"{prefix}.g1 is live (was {prefix})" in out
        assert time.monotonic() - started < 60
        assert await gpqa_rows(api, 3) == before
