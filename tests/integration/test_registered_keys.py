"""Each ingest process's copy of the registered client keys (issue #16): a key nobody registered
is refused without a Redis round trip, on the fast path and the batch route alike; a key
registered through another instance is accepted once the copy is reloaded; a revocation through
another instance takes effect at once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager

import httpx
import orjson
import redis.asyncio as aioredis

from services.demo.arena import SyntheticArena
from services.ingest.app import create_app
from shared.settings import IngestSettings
from tests.support.infra import ADMIN_TOKEN, Infra
from tests.support.ingest_app import RecordingPublisher, ingest_settings
from tests.support.storm import BOGUS_KEY
from tests.support.wait import wait_until

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@asynccontextmanager
async def instance(settings: IngestSettings) -> AsyncIterator[httpx.AsyncClient]:
    """One ingest instance in process, behind its fast path (its own Redis client)."""
    app = create_app(settings, publisher=RecordingPublisher())
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://ingest") as client:
            yield client


async def commands_processed(client: aioredis.Redis) -> int:
    info = await client.info("stats")
    return int(info["total_commands_processed"])


async def test_unknown_keys_are_refused_without_redis_and_known_ones_follow_redis(
    infra: Infra, prefix: str, redis_client: aioredis.Redis
) -> None:
    settings = ingest_settings(infra, prefix, ingest_client_keys_refresh_s=0.5)
    votes = SyntheticArena(arena="text", seed=3)
    async with instance(settings) as a, instance(settings) as b:

        async def vote(client: httpx.AsyncClient, key: str) -> int:
            r = await client.post("/v1/votes", json=votes.vote(), headers={"x-api-key": key})
            return r.status_code

        async def batch(client: httpx.AsyncClient, key: str) -> int:
            body = b"\n".join(orjson.dumps(v) for v in votes.votes(2))
            r = await client.post("/v1/votes/batch", content=body,
                                  headers={"x-api-key": key,
                                           "content-type": "application/x-ndjson"})
            return r.status_code

        await wait_until(lambda: _refused(vote(b, BOGUS_KEY)), 10, "b's copy loaded")
        before = await commands_processed(redis_client)
        answers = await asyncio.gather(*(vote(b, BOGUS_KEY) for _ in range(50)),
                                       *(batch(b, BOGUS_KEY) for _ in range(50)))
        after = await commands_processed(redis_client)
        assert set(answers) == {401}
        # at most a reload of the copy (and this test's own INFO): not one trip per request
        assert after - before <= 3, after - before

        created = (await a.post("/v1/admin/clients", json={"client": "late"},
                                headers=ADMIN)).json()
        key = created["api_key"]
        assert await vote(a, key) == 202  # registered here: known at once
        await wait_until(lambda: _accepted(vote(b, key)), 10, "b accepting the new key")
        assert await batch(b, key) == 202

        revoked = await a.delete(f"/v1/admin/clients/{created['key_id']}", headers=ADMIN)
        assert revoked.status_code == 204
        assert await vote(b, key) == 401  # b still has it in its copy, and asks Redis
        assert await batch(b, key) == 401


async def _refused(answer: Awaitable[int]) -> bool:
    return await answer == 401


async def _accepted(answer: Awaitable[int]) -> bool:
    return await answer == 202
