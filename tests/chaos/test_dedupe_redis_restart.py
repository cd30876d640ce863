"""Redis killed between Kafka's ack of a batch and the write of its dedupe markers (issue #16,
finding 10): the client's retry of the batch is a duplicate, never produced again. Ingest runs
in process (with its fast path) on a real Kafka and a Redis of the test's own, which the test
kills from the path between produce and remember."""

from __future__ import annotations

import asyncio
import os
import signal
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import redis.asyncio as aioredis

from services.common.registry import ModelRegistry
from services.demo.arena import SyntheticArena
from services.ingest.app import create_app
from services.ingest.vote_ids import VoteIdMemory
from shared.events import decode_vote_record
from shared.settings import IngestSettings
from tests.support.infra import DEV_API_KEY, ROOT, Infra, free_port, redis_script, redis_server
from tests.support.ingest_app import ingest_settings
from tests.support.kafka import read_topic
from tests.support.votes import NDJSON
from tests.support.wait import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

BATCH = 40


@dataclass
class Rig:
    client: httpx.AsyncClient
    memory: VoteIdMemory
    registry: ModelRegistry
    redis_env: dict[str, str]
    run_dir: Path
    port: int


@asynccontextmanager
async def ingest_on_own_redis(infra: Infra, prefix: str, **settings: Any) -> AsyncIterator[Rig]:
    """ingest (FastAPI app behind its fast path) with a real Kafka publisher, on a Redis of its
    own."""
    port = free_port()
    run_dir = ROOT / ".run" / f"test-redis-{prefix}"
    with redis_server(run_dir, port) as redis_env:
        url = f"redis://127.0.0.1:{port}/0"
        setup = aioredis.Redis.from_url(url)
        await setup.config_set("appendfsync", "always")  # markers and models survive a SIGKILL
        await setup.aclose()
        config: IngestSettings = ingest_settings(Infra(infra.kafka_bootstrap, url), prefix,
                                                 **settings)
        app = create_app(config)
        async with app.router.lifespan_context(app):
            await wait_until(lambda: _ready(app.state.publisher), 30, "the Kafka producer")
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://ingest",
                                         timeout=60) as client:
                yield Rig(client, app.state.memory, app.state.registry, redis_env, run_dir,
                          port)


async def _ready(publisher: Any) -> bool:
    return bool(publisher.ready)


def kill_redis_before_remembering(
    memory: VoteIdMemory, run_dir: Path, port: int,
    then: Callable[[], Awaitable[None]] | None = None,
) -> list[asyncio.Future[None]]:
    """The next ``remember`` (after Kafka's ack) first SIGKILLs Redis (and starts ``then``:
    the returned list holds it, to be awaited)."""
    remember = memory.remember
    armed = [True]
    started: list[asyncio.Future[None]] = []

    async def killing_first(vote_ids: Iterable[str]) -> None:
        ids = list(vote_ids)
        if armed and ids:
            armed.clear()
            os.kill(_pid(run_dir / "redis.pid"), signal.SIGKILL)
            await wait_until(lambda: _closed(port), 10, "Redis's port closed", interval=0.01)
            if then is not None:
                started.append(asyncio.ensure_future(then()))
        await remember(ids)

    memory.remember = killing_first  # type: ignore[method-assign]
    return started


def _pid(pidfile: Path) -> int:
    return int(pidfile.read_text())


async def _closed(port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return True
    writer.close()
    return False


async def post(client: httpx.AsyncClient, votes: list[dict[str, Any]],
               api_key: str | None = DEV_API_KEY) -> httpx.Response:
    body = b"\n".join(orjson.dumps(v) for v in votes)
    headers = {**NDJSON, **({"x-api-key": api_key} if api_key else {})}
    return await client.post("/v1/votes/batch", content=body, headers=headers)


async def register_models(rig: Rig, votes: list[dict[str, Any]]) -> None:
    """Register (and so cache in process) every model of ``votes``: no registry lookup later."""
    await rig.registry.register_missing({m for v in votes for m in (v["model_a"], v["model_b"])})


async def produced(infra: Infra, prefix: str) -> Counter[str]:
    """Records per vote_id on the votes topic."""
    topic = IngestSettings(topic_prefix=prefix + ".").topics.votes
    values = await read_topic(infra.kafka_bootstrap, topic)
    return Counter(v.vote_id for raw in values for v in decode_vote_record(raw))


async def test_a_redis_restart_between_produce_and_remember_is_ridden_out(
    infra: Infra, prefix: str
) -> None:
    """Redis back within the retry window: the markers are written before the 202, so the
    client's retry is answered with every id a duplicate, and each vote is produced once."""
    votes = list(SyntheticArena(arena="text", seed=21).votes(BATCH))
    ids = [v["vote_id"] for v in votes]
    async with ingest_on_own_redis(infra, prefix, ingest_dedupe_write_retry_s=30) as rig:
        await register_models(rig, votes)
        assert (await post(rig.client, votes[:1])).status_code == 202

        async def restart() -> None:
            await asyncio.to_thread(redis_script, rig.redis_env, "start")

        restarting = kill_redis_before_remembering(rig.memory, rig.run_dir, rig.port,
                                                   then=restart)
        first = await post(rig.client, votes[1:])
        assert first.status_code == 202, first.text
        await wait_until(lambda: _started(restarting), 30, "Redis restarting")
        await restarting[0]
        retry = await post(rig.client, votes[1:])
        assert retry.status_code == 202, retry.text
        assert sorted(retry.json()["duplicates"]) == sorted(ids[1:])
    counts = await produced(infra, prefix)
    assert sorted(counts) == sorted(ids)
    assert set(counts.values()) == {1}, {i: n for i, n in counts.items() if n > 1}


async def test_ids_redis_could_not_take_are_kept_in_process_until_it_can(
    infra: Infra, prefix: str
) -> None:
    """Redis down past the retry window: the 202 comes with the ids kept in process; a retry
    while Redis is down is a duplicate (the lookup consults them), the ids reach Redis once it
    is back, and a retry then is a duplicate too. Each vote is produced once."""
    votes = list(SyntheticArena(arena="text", seed=22).votes(BATCH))
    ids = [v["vote_id"] for v in votes]
    async with ingest_on_own_redis(infra, prefix, ingest_dedupe_write_retry_s=0.3,
                                   ingest_require_auth=False) as rig:
        await register_models(rig, votes)
        assert (await post(rig.client, votes[:1], None)).status_code == 202
        kill_redis_before_remembering(rig.memory, rig.run_dir, rig.port)
        first = await post(rig.client, votes[1:], None)
        assert first.status_code == 202, first.text
        # Redis still down: the dedupe lookup and the rate limits fail open (no key to check),
        # and the ids kept in process make the retry a duplicate
        during = await post(rig.client, votes[1:], None)
        assert during.status_code == 202, during.text
        assert sorted(during.json()["duplicates"]) == sorted(ids[1:])
        assert rig.memory.unremembered_count == BATCH - 1
        await asyncio.to_thread(redis_script, rig.redis_env, "start")
        await wait_until(lambda: _all_written(rig.memory), 30, "the kept ids written to Redis")
        after = await post(rig.client, votes[1:], None)
        assert after.status_code == 202, after.text
        assert sorted(after.json()["duplicates"]) == sorted(ids[1:])
    counts = await produced(infra, prefix)
    assert sorted(counts) == sorted(ids)
    assert set(counts.values()) == {1}, {i: n for i, n in counts.items() if n > 1}


async def _started(tasks: list[asyncio.Future[None]]) -> bool:
    return bool(tasks)


async def _all_written(memory: VoteIdMemory) -> bool:
    return memory.unremembered_count == 0
