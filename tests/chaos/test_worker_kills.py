"""100,000 votes while the rating worker is SIGKILLed and restarted at random moments: the final
counts equal exactly what ingest acknowledged."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from shared.keys import KeyLayout
from tests.support.counts import expected_counts, stored_counts, wait_for_counts
from tests.support.infra import Infra, service_env
from tests.support.processes import ServiceProcess
from tests.support.votes import mixed_votes, post_batch
from tests.support.wait import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(480)]

VOTES = 100_000
BATCH = 1_000
KILLS = 6


async def counted(client: aioredis.Redis, base: KeyLayout) -> int:
    return sum(c.total() for b, c in (await stored_counts(client, base)).items()
               if b.endswith("/overall"))


async def test_sigkilled_worker_counts_every_acknowledged_vote_once(
    infra: Infra, prefix: str, redis_client: aioredis.Redis
) -> None:
    env = service_env(infra, prefix, PODIUM_RATING_BATCH_MAX="2000",
                      PODIUM_RATING_SESSION_TIMEOUT_S="6")
    base = KeyLayout(prefix)
    rng = random.Random(prefix)
    ingest = await ServiceProcess("ingest", env, log_name=f"ingest-{prefix}").start()
    rating = await ServiceProcess("rating", env, log_name=f"rating-{prefix}").start()
    acknowledged: list[dict[str, Any]] = []
    kills = 0
    chaos: asyncio.Task[None] | None = None
    try:
        # kill at random points of the stream, each after the restarted worker counted again
        moments = sorted(rng.sample(range(5_000, VOTES - 10_000, BATCH), KILLS))

        async def killer() -> None:
            nonlocal kills
            for moment in moments:
                async def reached(m: int = moment) -> bool:
                    return len(acknowledged) >= m

                await wait_until(reached, 300, f"{moment} votes acknowledged")
                before = await counted(redis_client, base)
                await wait_until(
                    lambda b=before: _more(redis_client, base, b), 120, "worker counting")
                await asyncio.sleep(rng.uniform(0, 0.3))  # a random moment inside a batch
                rating.kill()
                kills += 1
                await rating.start()
            # and one graceful stop mid-stream: the batch in flight finishes, exit code 0
            before = await counted(redis_client, base)
            await wait_until(lambda: _more(redis_client, base, before), 60, "worker counting")
            assert await asyncio.to_thread(rating.stop) == 0, "exits 0 on SIGTERM mid-stream"
            await rating.start()

        chaos = asyncio.create_task(killer())
        votes = mixed_votes(10 * VOTES, seed=11)
        async with httpx.AsyncClient(base_url=ingest.url, timeout=60) as client:
            # at least VOTES, and on until the chaos is over (so its last stop is mid-stream)
            while len(acknowledged) < VOTES or not chaos.done():
                chunk = [next(votes) for _ in range(BATCH)]
                r = await post_batch(client, chunk)
                assert r.status_code == 202, r.text
                acknowledged.extend(chunk)
                if len(acknowledged) >= VOTES:  # past the quota, a trickle until the chaos ends
                    await asyncio.sleep(0.25)  # (ingest can outrun a worker killed 6 times)
        await chaos
        assert kills == KILLS
        await wait_for_counts(redis_client, base, expected_counts(acknowledged), 180)
        assert await counted(redis_client, base) == len(acknowledged) >= VOTES
    finally:
        if chaos is not None and not chaos.done():  # else it would restart the worker later
            chaos.cancel()
            await asyncio.gather(chaos, return_exceptions=True)
        code = rating.stop()
        ingest.stop()
    assert code == 0, "the worker exits 0 on SIGTERM"


async def _more(client: aioredis.Redis, base: KeyLayout, than: int) -> bool:
    return await counted(client, base) > than
