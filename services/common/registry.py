"""The model registry in Redis: one hash, model id -> ModelInfo JSON.

ingest writes it (admin endpoints, auto-registration) and checks votes against it; the api reads
it to label and filter rows. Entries are never deleted, so a positive lookup can be cached.
"""

from __future__ import annotations

from collections.abc import Iterable

import redis.asyncio as aioredis

from services.common.redis_client import RedisClient, execute_and_publish
from shared.events import ModelFields, ModelInfo
from shared.keys import ALL_BOARDS, KeyLayout, text


class ModelRegistry:
    def __init__(self, client: RedisClient, keys: KeyLayout) -> None:
        self._redis = client
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
        return {text(k): ModelInfo.model_validate_json(v) for k, v in raw.items()}

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
            if await self._redis.hsetnx(self._key, model_id, entry.model_dump_json()):
                added.append(model_id)
            self._known.add(model_id)
        if added:
            await self._changed()
        return added

    async def create(self, info: ModelInfo) -> bool:
        """Register ``info``; False (and nothing written) when the id is taken."""
        created = bool(await self._redis.hsetnx(self._key, info.id, info.model_dump_json()))
        self._known.add(info.id)
        if created:
            await self._changed()
        return created

    async def update(self, model_id: str, fields: ModelFields) -> ModelInfo | None:
        """Apply ``fields`` to a registered model (optimistic: retried on a concurrent write)."""
        async with self._redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    await pipe.watch(self._key)
                    raw = await pipe.hget(self._key, model_id)
                    if raw is None:
                        await pipe.unwatch()  # type: ignore[no-untyped-call]
                        return None
                    info = ModelInfo.model_validate_json(raw).updated(fields)
                    pipe.multi()  # type: ignore[no-untyped-call]
                    pipe.hset(self._key, model_id, info.model_dump_json())
                    await pipe.execute()
                    await self._changed()
                    return info
                except aioredis.WatchError:
                    continue
