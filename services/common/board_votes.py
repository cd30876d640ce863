"""A model's votes on every board, read from the standings documents (the live generation):
what the registry records as the baseline of its fresh votes when ``public_since`` is set."""

from __future__ import annotations

import orjson

from services.common.redis_client import RedisClient
from shared.generations import active_layout
from shared.keys import KeyLayout, board_name, text


async def model_votes(client: RedisClient, base: KeyLayout, model: str) -> dict[str, int]:
    """``{"arena/view": votes}`` of each board the model has a row on (an admin action: one
    read per board, no hot path)."""
    keys = await active_layout(client, base)
    found: dict[str, int] = {}
    for arena in sorted(text(a) for a in await client.smembers(keys.arenas())):
        for view in sorted(text(v) for v in await client.smembers(keys.views(arena))):
            raw = await client.get(keys.standings(arena, view))
            if raw is None:
                continue
            for row in orjson.loads(raw)["rows"]:
                if row["model"] == model:
                    found[board_name(arena, view)] = int(row["votes"])
                    break
    return found
