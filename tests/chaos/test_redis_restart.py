"""Redis stops and restarts (AOF) while votes stream in: no acknowledged vote is lost, none is
counted twice, and the worker resumes by itself."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import redis.asyncio as aioredis

from services.demo.arena import SyntheticArena
from shared.keys import KeyLayout
from tests.support.counts import expected_counts, stored_counts, wait_for_counts
from tests.support.infra import (
    DEV_HEADERS,
    ROOT,
    Infra,
    free_port,
    redis_script,
    redis_server,
    service_env,
)
from tests.support.processes import ServiceProcess, running_stack
from tests.support.votes import NDJSON, mixed_votes, post_batch
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
                        await post_until_accepted(http, chunk)
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


async def post_until_accepted(http: httpx.AsyncClient, chunk: list[dict[str, Any]]) -> None:
    """Post a batch as a client does: while Redis restarts ingest may shed it with 503 +
    Retry-After (issue #16); the client sends the same votes again until they are accepted,
    and a retry must never count twice."""
    deadline = asyncio.get_running_loop().time() + 60
    while True:
        r = await post_batch(http, chunk)
        if r.status_code == 202:
            return
        assert r.status_code == 503 and "retry-after" in r.headers, r.text
        assert asyncio.get_running_loop().time() < deadline, "503 for a minute"
        await asyncio.sleep(float(r.headers["retry-after"]) / 10)  # the client's back-off


def _restart(env: dict[str, str]) -> None:
    redis_script(env, "stop")
    redis_script(env, "start")


async def test_ingest_and_api_answer_503_while_redis_is_killed_and_recover_by_themselves(
    infra: Infra, prefix: str
) -> None:
    """Redis SIGKILLed and started again: meanwhile a request that needs Redis is answered 503
    with Retry-After; once it is back, the next requests succeed (a retry on a fresh
    connection), never a 500, and /readyz is 200 again."""
    port = free_port()
    run_dir = ROOT / ".run" / f"test-redis-{prefix}"
    with redis_server(run_dir, port) as redis_env:
        url = f"redis://127.0.0.1:{port}/0"
        setup = aioredis.Redis.from_url(url)
        await setup.config_set("appendfsync", "always")  # the dev key survives the SIGKILL
        await setup.aclose()
        env = service_env(Infra(infra.kafka_bootstrap, url), prefix,
                          PODIUM_INGEST_REQUIRE_AUTH="true")
        async with running_stack(env, prefix, ("ingest", "api")) as stack:
            votes = SyntheticArena(arena="text", seed=10)
            async with httpx.AsyncClient(timeout=30, headers=DEV_HEADERS) as http:
                ingest, api = stack["ingest"].url, stack["api"].url
                first = votes.vote()

                async def write() -> httpx.Response:
                    return await http.post(f"{ingest}/v1/votes", json=votes.vote())

                async def batch() -> httpx.Response:
                    body = b"\n".join(orjson.dumps(v) for v in votes.votes(3))
                    return await http.post(f"{ingest}/v1/votes/batch", content=body,
                                           headers=NDJSON)

                async def read() -> httpx.Response:
                    return await http.get(f"{api}/v1/models/{first['model_a']}")

                assert (await http.post(f"{ingest}/v1/votes", json=first)).status_code == 202
                assert (await read()).status_code == 200

                await _kill(_pid(run_dir / "redis.pid"), port)
                for request in (write, batch, read):
                    r = await request()
                    assert r.status_code == 503, r.text
                    assert r.headers["retry-after"] == "1"
                redis_script(redis_env, "start")
                for request in (write, batch, read):  # the very next ones: no 500
                    r = await request()
                    assert r.status_code in (200, 202), r.text

                async def ready(base: str) -> bool:
                    return (await http.get(f"{base}/readyz")).status_code == 200

                await wait_until(lambda: ready(ingest), 30, "ingest ready again")
                await wait_until(lambda: ready(api), 30, "api ready again")


def _pid(pidfile: Path) -> int:
    return int(pidfile.read_text())


async def _kill(pid: int, port: int) -> None:
    """SIGKILL the server and wait until its port is closed."""
    os.kill(pid, signal.SIGKILL)

    async def closed() -> bool:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            return True
        writer.close()
        return False

    await wait_until(closed, 10, "the killed Redis's port closed", interval=0.01)
