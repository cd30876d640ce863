"""Systems of record (services/common/records.py), real Kafka and Redis: a replay is idempotent
and never puts an older record over a newer one, even one written while the replay runs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis

from services.common.records import Book, RecordWriter, Replayer
from services.common.registry import ModelRegistry
from services.ingest.client_keys import ClientKeys
from shared.events import ModelFields, ModelInfo
from shared.keys import KeyLayout
from shared.topics import Topics
from tests.support.infra import Infra


def marker(name: str) -> Any:
    async def key() -> str:
        return name
    return key


async def test_a_replay_never_puts_an_older_record_over_a_newer_one(
    infra: Infra, prefix: str, redis_client: aioredis.Redis
) -> None:
    keys, topics = KeyLayout(prefix), Topics(prefix + ".")
    writer = RecordWriter(infra.kafka_bootstrap, [topics.clients, topics.models])
    try:
        store = ClientKeys(redis_client, keys, records=writer, topic=topics.clients)
        registry = ModelRegistry(redis_client, keys, writer, topics.models)
        kept = await store.add("pdm_kept-key", "kept")
        doomed = await store.add("pdm_doomed-key", "doomed")
        await registry.create(ModelInfo(id="m-1", organization="Old"))
        raced: list[str] = []

        async def clients_with_a_race(records: Sequence[Any]) -> None:
            """While the replay runs, a revocation and a re-registration land (newer)."""
            if not raced:
                raced.append("once")
                assert await store.revoke(doomed.key_id)
                await store.add("pdm_kept-key", "renamed")
            await store.apply_records(records)

        async def models_with_a_race(records: Sequence[Any]) -> None:
            if len(raced) == 1:
                raced.append("twice")
                await registry.update("m-1", ModelFields(organization="New"))
            await registry.apply_records(records)

        books = [Book(topics.clients, clients_with_a_race, marker(keys.restored("c"))),
                 Book(topics.models, models_with_a_race, marker(keys.restored("m")))]
        replayer = Replayer(redis_client, infra.kafka_bootstrap, books, 60)
        assert await replayer.restore_missing() == 2
        assert raced == ["once", "twice"]
        assert await store.get(doomed.key_id) is None, "an older record brought a revoked key back"
        again = await store.get(kept.key_id)
        assert again is not None and again.client == "renamed"
        info = await registry.get("m-1")
        assert info is not None and info.organization == "New"

        # idempotent: replayed again (Redis lost nothing), the same state
        await redis_client.delete(keys.restored("c"), keys.restored("m"))
        assert await replayer.restore_missing() == 2
        assert await store.get(doomed.key_id) is None
        again = await store.get(kept.key_id)
        assert again is not None and again.client == "renamed"
        assert [r.client for r in await store.all()] == ["renamed"]
        assert list(await registry.all()) == ["m-1"], "offset fields are not models"
        assert not await replayer.restore_missing(), "nothing missing: nothing replayed"
    finally:
        await writer.stop()


async def test_a_wiped_registry_and_key_store_come_back_from_the_topics(
    infra: Infra, prefix: str, redis_client: aioredis.Redis
) -> None:
    keys, topics = KeyLayout(prefix), Topics(prefix + ".")
    writer = RecordWriter(infra.kafka_bootstrap, [topics.clients, topics.models])
    try:
        store = ClientKeys(redis_client, keys, records=writer, topic=topics.clients)
        registry = ModelRegistry(redis_client, keys, writer, topics.models)
        record = await store.add("pdm_a-key", "frontend")
        await registry.create(ModelInfo(id="m-2", country="FR"))
        assert await registry.register_missing(["m-3"]) == ["m-3"]
        before = (await registry.all(), await store.all())
        books = [Book(topics.clients, store.apply_records, marker(keys.restored("c"))),
                 Book(topics.models, registry.apply_records, marker(keys.restored("m")))]
        replayer = Replayer(redis_client, infra.kafka_bootstrap, books, 60)
        await replayer.restore_missing()
        async for key in redis_client.scan_iter(match=f"{prefix}:*"):
            await redis_client.delete(key)
        assert await store.get(record.key_id) is None
        assert await replayer.restore_missing() == 2
        assert (await registry.all(), await store.all()) == before
    finally:
        await writer.stop()
