"""Read side of the standings in Redis (the api never computes ratings)."""

from __future__ import annotations

from typing import Any

import orjson
import redis.asyncio as aioredis

from shared.generations import active_layout
from shared.keys import KeyLayout, board_name, text


class StandingsReader:
    """Reads the live generation of the key space (``shared.generations``): after a rebuild
    switches, the next read comes from the rebuilt one."""

    def __init__(self, client: aioredis.Redis, keys: KeyLayout) -> None:
        self._redis = client
        self._keys = keys

    async def board(self, arena: str, view: str, keys: KeyLayout | None = None) -> bytes | None:
        """The board's standings document as the rating service wrote it (JSON bytes)."""
        keys = keys or await active_layout(self._redis, self._keys)
        value = await self._redis.get(keys.standings(arena, view))
        return value.encode() if isinstance(value, str) else value

    async def boards(self) -> list[dict[str, Any]]:
        """Every board with its size, ordered by arena then view (``overall`` first)."""
        keys = await active_layout(self._redis, self._keys)
        arenas = sorted(text(a) for a in await self._redis.smembers(keys.arenas()))
        pairs: list[tuple[str, str]] = []
        for arena in arenas:
            views = sorted(text(v) for v in await self._redis.smembers(keys.views(arena)))
            views.sort(key=lambda v: (v != "overall", v.startswith("lang:"), v))
            pairs.extend((arena, v) for v in views)
        if not pairs:
            return []
        docs = []
        for arena, view in pairs:  # keys live on different slots in a cluster: no MGET
            raw = await self.board(arena, view, keys)
            if raw is None:
                continue
            doc = orjson.loads(raw)
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
