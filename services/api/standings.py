"""Read side of the rating state in Redis (the api never computes ratings)."""

from __future__ import annotations

from typing import Any

import orjson

from services.common.redis_client import RedisClient
from shared.generations import active_layout
from shared.keys import KeyLayout, board_name, text


class StandingsReader:
    """Standings and board lists come from the live generation of the key space
    (``shared.generations``): after a rebuild switches, the next read comes from the rebuilt
    one. Matrices and history are read-side records of the base key space."""

    def __init__(self, client: RedisClient, keys: KeyLayout) -> None:
        self._redis = client
        self._keys = keys

    async def _get(self, key: str) -> bytes | None:
        value = await self._redis.get(key)
        return value.encode() if isinstance(value, str) else value

    async def board(self, arena: str, view: str, keys: KeyLayout | None = None) -> bytes | None:
        """The board's standings document as the rating service wrote it (JSON bytes)."""
        keys = keys or await active_layout(self._redis, self._keys)
        return await self._get(keys.standings(arena, view))

    async def board_doc(self, arena: str, view: str) -> dict[str, Any] | None:
        raw = await self.board(arena, view)
        return None if raw is None else dict(orjson.loads(raw))

    async def matrices(self, arena: str, view: str) -> dict[str, Any] | None:
        raw = await self._get(self._keys.matrices(arena, view))
        return None if raw is None else dict(orjson.loads(raw))

    async def history(self, arena: str, view: str, model: str, limit: int) -> list[Any]:
        raw = await self._redis.lrange(self._keys.history(arena, view, model), -limit, -1)
        return [orjson.loads(p) for p in raw]

    async def board_names(self) -> list[tuple[str, str]]:
        """Every (arena, view), ordered by arena then view (``overall`` first)."""
        keys = await active_layout(self._redis, self._keys)
        arenas = sorted(text(a) for a in await self._redis.smembers(keys.arenas()))
        pairs: list[tuple[str, str]] = []
        for arena in arenas:
            views = sorted(text(v) for v in await self._redis.smembers(keys.views(arena)))
            views.sort(key=lambda v: (v != "overall", v.startswith("lang:"), v))
            pairs.extend((arena, v) for v in views)
        return pairs

    async def boards(self) -> list[dict[str, Any]]:
        """Every board with its size."""
        docs = []
        for arena, view in await self.board_names():  # different slots in a cluster: no MGET
            doc = await self.board_doc(arena, view)
            if doc is None:
                continue
            docs.append(
                {
                    "board": board_name(arena, view),
                    "arena": arena,
                    "view": view,
                    "models": doc["models"],
                    "votes": doc["votes"],
                    "updated_at": doc["updated_at"],
                }
            )
        return docs
