"""Benchmark boards on a real Redis: latest score wins, replays change nothing."""

from __future__ import annotations

from collections.abc import Sequence

import orjson
import redis.asyncio as aioredis

from services.rating.arena_slices import RawRecord
from services.rating.scores import ScoreProcessor
from shared.events import RankChange, ScoreEvent
from shared.keys import KeyLayout


def record(offset: int, model: str, score: float) -> RawRecord:
    event = ScoreEvent(model=model, benchmark="mmlu", score=score, source="s")
    return RawRecord("scores", 0, offset, event.model_dump_json().encode())


async def test_latest_score_wins_and_replays_are_no_ops(
    redis_client: aioredis.Redis, prefix: str
) -> None:
    keys = KeyLayout(prefix)
    changes: list[RankChange] = []

    async def publish(values: Sequence[bytes]) -> None:
        changes.extend(RankChange.model_validate_json(v) for v in values)

    processor = ScoreProcessor(redis_client, keys, publish)
    first = [record(0, "x", 60.0), record(1, "y", 70.0), record(2, "junk", 1.0)]
    first[2] = RawRecord("scores", 0, 2, b"{not json")
    await processor.process(first)
    assert [(c.model, c.new_rank) for c in changes] == [("y", 1), ("x", 2)]

    await processor.process([record(3, "x", 80.0)])  # x overtakes y
    assert [(c.model, c.old_rank, c.new_rank) for c in changes[2:]] == [
        ("x", 2, 1), ("y", 1, 2)]

    replay = ScoreProcessor(redis_client, keys, publish)  # a restarted worker replays
    await replay.process([record(1, "y", 70.0), record(3, "x", 80.0)])
    assert len(changes) == 4
    doc = orjson.loads(await redis_client.get(keys.standings("bench", "mmlu")))
    assert [(r["model"], r["score"]) for r in doc["rows"]] == [("x", 80.0), ("y", 70.0)]
    assert doc["board"] == "bench/mmlu"
    assert b"bench" in await redis_client.smembers(keys.arenas())
