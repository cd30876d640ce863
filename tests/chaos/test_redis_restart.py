"""Redis stops and restarts (AOF) while votes stream in: no acknowledged vote is lost, none is
counted twice, and the worker resumes by itself."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from shared.keys import KeyLayout
from tests.support.counts import expected_counts, stored_counts, wait_for_counts
from tests.support.infra import ROOT, Infra, free_port, redis_script, redis_server, service_env
from tests.support.processes import ServiceProcess
from tests.support.votes import mixed_votes, post_batch
from tests.support.wait import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

BATCH = 200


async def test_no_acknowledged_vote_is_lost_across_a_redis_restart(
    infra: Infra, prefix: str
) -> None:
    port = free_port()
    with redis_server(ROOT / ".run" / f"test-redis-{prefix}", port) as redis_env:
        url = f"redis://127.0.0.1:{port}/0"
        env = service_env(Infra(infra.kafka_bootstrap, url), prefix,
                          PODIUM_RATING_SESSION_TIMEOUT_S="6")
        client = aioredis.Redis.from_url(url)
        ingest = await ServiceProcess("ingest", env, log_name=f"ingest-{prefix}").start()
        rating = await ServiceProcess("rating", env, log_name=f"rating-{prefix}").start()
        acknowledged: list[dict[str, Any]] = []
        base = KeyLayout(prefix)
        try:
            votes = mixed_votes(10**6, seed=31)
            async with httpx.AsyncClient(base_url=ingest.url, timeout=30) as http:
                async def post_batches(n: int) -> None:
                    for _ in range(n):
                        chunk = [next(votes) for _ in range(BATCH)]
                        r = await post_batch(http, chunk)
                        assert r.status_code == 202, r.text  # ingest does not need Redis
                        acknowledged.extend(chunk)

                await post_batches(25)

                async def counted_more_than(n: int) -> Callable[[], Any]:
                    async def probe() -> bool:
                        counts = await stored_counts(client, base)
                        return sum(c.total() for c in counts.values()) > n
                    return probe

                await wait_until(await counted_more_than(0), 60, "the worker counting")
                restart = asyncio.create_task(asyncio.to_thread(_restart, redis_env))
                while not restart.done():  # votes keep coming while Redis is down
                    await post_batches(1)
                await restart
                await client.aclose()  # its connection died with the server
                client = aioredis.Redis.from_url(url)
                await post_batches(25)
            await wait_for_counts(client, base, expected_counts(acknowledged), 120)
        finally:
            code = rating.stop()
            ingest.stop()
            await client.aclose()
        assert code == 0


def _restart(env: dict[str, str]) -> None:
    redis_script(env, "stop")
    redis_script(env, "start")
