"""Posting synthetic votes to ingest as NDJSON batches, keeping what was acknowledged."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import httpx
import orjson

from services.demo.arena import SyntheticArena

NDJSON = {"content-type": "application/x-ndjson"}


def mixed_votes(n: int, seed: int, arenas: tuple[str, ...] = ("text", "vision")
                ) -> Iterator[dict[str, Any]]:
    """Votes of several arenas, interleaved (they land on different partitions)."""
    sources = itertools.cycle([SyntheticArena(arena=a, seed=seed + i) for i, a in
                               enumerate(arenas)])
    for _ in range(n):
        yield next(sources).vote()


async def post_batch(client: httpx.AsyncClient, votes: list[dict[str, Any]]) -> httpx.Response:
    body = b"\n".join(orjson.dumps(v) for v in votes)
    return await client.post("/v1/votes/batch", content=body, headers=NDJSON)


async def post_all(client: httpx.AsyncClient, votes: list[dict[str, Any]], batch: int = 1000
                   ) -> list[dict[str, Any]]:
    """Post every vote (all must be answered 202); returns them."""
    for start in range(0, len(votes), batch):
        r = await post_batch(client, votes[start:start + batch])
        assert r.status_code == 202, r.text
    return votes
