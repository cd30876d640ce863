"""Redis adapter of the rating service: the atomic, fenced apply and the standings documents."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from importlib.resources import files

import redis.asyncio as aioredis

from services.rating.batch import ArenaSlice, lua_args
from shared.generations import Generations, read_generations
from shared.keys import KeyLayout, parse_count_field, text

APPLY_SCRIPT = files("services.rating").joinpath("apply_batch.lua").read_text()

APPLIED, ALREADY_APPLIED, PARTLY_APPLIED, BEHIND = 1, 0, -1, -2


class RatingStore:
    def __init__(self, client: aioredis.Redis, keys: KeyLayout) -> None:
        self._redis = client
        self._keys = keys
        self._apply = client.register_script(APPLY_SCRIPT)

    @property
    def keys(self) -> KeyLayout:
        return self._keys

    def for_keys(self, keys: KeyLayout) -> RatingStore:
        """The same Redis, another key space (generation)."""
        return self if keys == self._keys else RatingStore(self._redis, keys)

    async def generations(self, base: KeyLayout) -> Generations:
        return await read_generations(self._redis, base)

    async def apply(
        self,
        sl: ArenaSlice,
        elo: Mapping[str, Mapping[str, float]] | None = None,
        required_fence: int = -1,
    ) -> tuple[int, int]:
        """Apply a slice (counts, and the Elo ratings after it) exactly once; returns
        (status, fence offset after the call). With ``required_fence``, nothing is applied
        (status BEHIND) while the fence is below it."""
        views, argv = lua_args(sl, elo, required_fence)
        keys = [
            self._keys.fence(sl.arena),
            self._keys.views(sl.arena),
            *(self._keys.counts(sl.arena, v) for v in views),
            *(self._keys.elo(sl.arena, v) for v in views),
        ]
        status, fence = await self._apply(keys=keys, args=argv)
        return int(status), int(fence)

    async def read_elo(self, arena: str, views: Iterable[str]) -> dict[str, dict[str, float]]:
        """Each view's online-Elo ratings (model -> rating)."""
        out: dict[str, dict[str, float]] = {}
        for view in views:
            raw = await self._redis.hgetall(self._keys.elo(arena, view))
            out[view] = {text(k): float(v) for k, v in raw.items()}
        return out

    async def read_fence(self, arena: str) -> dict[str, int]:
        """``topic/partition`` -> last applied offset, of one arena."""
        raw = await self._redis.hgetall(self._keys.fence(arena))
        return {text(k): int(v) for k, v in raw.items()}

    async def boards(self) -> list[tuple[str, str]]:
        """Every (arena, view) with counts in this key space."""
        out: list[tuple[str, str]] = []
        for arena in sorted(text(a) for a in await self._redis.smembers(self._keys.arenas())):
            views = await self._redis.smembers(self._keys.views(arena))
            out.extend((arena, text(v)) for v in sorted(views))
        return out

    async def register_arenas(self, arenas: set[str]) -> None:
        if arenas:
            await self._redis.sadd(self._keys.arenas(), *sorted(arenas))

    async def read_counts(self, arena: str, view: str) -> dict[tuple[str, str, str], int]:
        raw = await self._redis.hgetall(self._keys.counts(arena, view))
        return {parse_count_field(text(k)): int(v) for k, v in raw.items()}

    async def write_standings(self, arena: str, view: str, document: bytes) -> None:
        await self._redis.set(self._keys.standings(arena, view), document)

    async def read_standings(self, arena: str, view: str) -> bytes | None:
        value = await self._redis.get(self._keys.standings(arena, view))
        return value.encode() if isinstance(value, str) else value
