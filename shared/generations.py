"""Which generation of the rating key space is live, and which one a rebuild is filling.

The pointer is one small hash (``KeyLayout.generations()`` of the base prefix) read with one
HMGET, so a reader sees ``active`` and ``next`` of the same moment. See shared/keys.py.
"""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from shared.keys import ACTIVE, NEXT, KeyLayout, text


@dataclass(frozen=True)
class Generations:
    active: KeyLayout
    next: KeyLayout | None


async def read_generations(client: Redis | RedisCluster, base: KeyLayout) -> Generations:
    active, following = await client.hmget(base.generations(), [ACTIVE, NEXT])
    return Generations(
        active=KeyLayout(text(active)) if active is not None else base,
        next=KeyLayout(text(following)) if following is not None else None,
    )


async def active_layout(client: Redis | RedisCluster, base: KeyLayout) -> KeyLayout:
    return (await read_generations(client, base)).active
