"""The model registry in Redis: one hash, model id -> ModelInfo JSON.

ingest writes it (admin endpoints, auto-registration) and checks votes against it; the api reads
it to label and filter rows. Entries are never deleted, so a positive lookup can be cached.

With a ``RecordWriter`` (ingest), every write goes to the models topic first, its system of
record (services/common/records.py), then to Redis with the record's offset (``#offset:{id}``
in the same hash: ``#`` starts no model id), so a replay never puts an older entry back.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from services.common.records import Place, RecordStore, RecordWriter, record_key
from services.common.redis_client import RedisClient, execute_and_publish
from shared.events import ModelFields, ModelInfo
from shared.keys import ALL_BOARDS, KeyLayout, text

OFFSET_FIELD = "#offset:"  # ``#offset:{model id}`` -> offset of its record in the models topic


class ModelRegistry:
    def __init__(self, client: RedisClient, keys: KeyLayout,
                 records: RecordWriter | None = None, topic: str = "") -> None:
        self._redis = client
        self._records = records
        self._topic = topic
        self._store = RecordStore(client)
        self._key = keys.models()
        self._version_key = keys.models_version()
        self._changes = keys.board_changes()
        self._known: set[str] = set()
        self._all: tuple[int, dict[str, ModelInfo]] | None = None

    async def get(self, model_id: str) -> ModelInfo | None:
        raw = await self._redis.hget(self._key, model_id)
        return None if raw is None else ModelInfo.model_validate_json(raw)

    async def all(self) -> dict[str, ModelInfo]:
        raw = await self._redis.hgetall(self._key)
        return {name: ModelInfo.model_validate_json(v) for k, v in raw.items()
                if not (name := text(k)).startswith(OFFSET_FIELD)}

    def place(self, model_id: str) -> Place:
        """Where the model's entry and its record's offset live in Redis."""
        return Place(self._key, model_id, self._key, OFFSET_FIELD + model_id)

    async def _write(self, info: ModelInfo) -> None:
        """The entry to the models topic (when there is a writer), then to Redis."""
        value = info.model_dump_json()
        if self._records is None:
            await self._redis.hset(self._key, info.id, value)
            return
        offset = await self._records.write(self._topic, info.id, value.encode())
        await self._store.put(self.place(info.id), offset, value)

    async def apply_records(self, records: Iterable[Any]) -> None:
        """Replay: write consumer records of the models topic (each only if newer)."""
        for rec in records:
            model_id = record_key(rec)
            if model_id.startswith(OFFSET_FIELD) or rec.value is None:
                continue  # entries are never deleted
            await self._store.put(self.place(model_id), rec.offset, rec.value)
            self._known.add(model_id)

    async def replayed(self) -> None:
        """After a replay: a version no reader has seen (the counter was lost with Redis, so an
        INCR could repeat a version a reader caches), and the api's caches dropped."""
        await execute_and_publish(
            self._redis, lambda pipe: pipe.incrby(self._version_key, time.time_ns() // 1000),
            self._changes, ALL_BOARDS)

    async def version(self) -> int:
        """How many times the registry changed; equal versions mean equal contents."""
        raw = await self._redis.get(self._version_key)
        return int(raw) if raw is not None else 0

    async def all_at(self, version: int) -> dict[str, ModelInfo]:
        """Every model, parsed once per registry version (read it with ``version()`` first)."""
        if self._all is None or self._all[0] != version:
            self._all = (version, await self.all())
        return self._all[1]

    async def _changed(self) -> None:
        """Bump the version, then tell the api's board caches (boards show registry facts)."""
        await execute_and_publish(self._redis, lambda pipe: pipe.incr(self._version_key),
                                  self._changes, ALL_BOARDS)

    async def unknown(self, model_ids: Iterable[str]) -> list[str]:
        """The ids among ``model_ids`` that are not registered, in sorted order."""
        wanted = sorted(set(model_ids) - self._known)
        if not wanted:
            return []
        found = await self._redis.hmget(self._key, wanted)
        missing = []
        for model_id, hit in zip(wanted, found, strict=True):
            if hit is None:
                missing.append(model_id)
            else:
                self._known.add(model_id)
        return missing

    async def register_missing(self, model_ids: Iterable[str]) -> list[str]:
        """Register each id that is not registered yet with defaults; returns the new ones."""
        added = []
        for model_id in await self.unknown(model_ids):
            entry = ModelInfo.register(model_id, ModelFields())
            if not await self._redis.hexists(self._key, model_id):  # raced with another writer
                await self._write(entry)
                added.append(model_id)
            self._known.add(model_id)
        if added:
            await self._changed()
        return added

    async def create(self, info: ModelInfo) -> bool:
        """Register ``info``; False (and nothing written) when the id is taken. Two creates of
        one id at the same moment both succeed: the later record in the topic is the entry."""
        if await self._redis.hexists(self._key, info.id):
            self._known.add(info.id)
            return False
        await self._write(info)
        self._known.add(info.id)
        await self._changed()
        return True

    async def update(self, model_id: str, fields: ModelFields) -> ModelInfo | None:
        """Apply ``fields`` to a registered model; of two updates at the same moment, the later
        record in the topic is the entry (its fields over the entry it read)."""
        raw = await self._redis.hget(self._key, model_id)
        if raw is None:
            return None
        info = ModelInfo.model_validate_json(raw).updated(fields)
        await self._write(info)
        await self._changed()
        return info

    async def replace(self, info: ModelInfo) -> None:
        """Write ``info`` as the entry of a registered model (the admin's lifecycle updates:
        the caller read it, applied the fields and set the server-set ones)."""
        await self._write(info)
        self._known.add(info.id)
        await self._changed()
