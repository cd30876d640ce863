"""Client keys stored before ingest's keys shared the ``{ingest}`` hash tag (``{p}:clients``)
are moved over when ingest starts: the same key still authenticates after the upgrade."""

from __future__ import annotations

import redis.asyncio as aioredis

from services.ingest.client_keys import ClientKeys, ClientRecord, key_digest, key_id
from shared.keys import KeyLayout


async def test_old_client_keys_are_moved_to_the_tagged_hash(
    redis_client: aioredis.Redis, prefix: str
) -> None:
    keys = KeyLayout(prefix)
    digest = key_digest("an-old-client-key-0123456789abcdef")
    old = ClientRecord(key_id=key_id(digest), client="frontend", digest=digest,
                       require_signature=False, created_at="2026-01-01T00:00:00Z")
    await redis_client.hset(keys.legacy_clients(), old.key_id, old.model_dump_json())
    store = ClientKeys(redis_client, keys)
    newer = await store.add("a-newer-client-key-0123456789abcdef", "dev")

    assert await store.adopt_legacy() == 1
    assert await store.get(old.key_id) == old
    assert await store.get(newer.key_id) == newer
    assert not await redis_client.exists(keys.legacy_clients())
    assert await store.adopt_legacy() == 0  # once
