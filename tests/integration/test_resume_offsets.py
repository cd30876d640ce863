"""Where the rating worker resumes a votes partition, read from a real Redis after real batches
(services/rating/resume.py), and the processor noticing that Redis lost what it applied."""

from __future__ import annotations

from collections.abc import Sequence

import orjson
import redis.asyncio as aioredis

from services.demo.arena import SyntheticArena
from services.rating.arena_slices import RawRecord
from services.rating.processor import Outputs, RatingProcessor, ResumeHooks
from services.rating.resume import StateLost, resume_offsets
from services.rating.store import RatingStore
from shared.keys import KeyLayout

TOPIC = "votes"


def records(arena: str, partition: int, offsets: range, seed: int = 3) -> list[RawRecord]:
    votes = SyntheticArena(arena=arena, seed=seed).votes(len(offsets))
    return [RawRecord(TOPIC, partition, o, orjson.dumps(v)) for o, v in zip(offsets, votes,
                                                                           strict=True)]


async def ignore(values: Sequence[bytes]) -> None:
    return None


def processor(client: aioredis.Redis, keys: KeyLayout, lost: list[StateLost]) -> RatingProcessor:
    async def on_lost(exc: StateLost) -> None:
        lost.append(exc)

    return RatingProcessor(RatingStore(client, keys), Outputs(ignore, ignore),
                           generations_of=keys, resume=ResumeHooks(on_state_lost=on_lost))


async def test_a_partition_resumes_after_the_lowest_fence_of_the_arenas_it_carries(
    redis_client: aioredis.Redis, prefix: str
) -> None:
    keys = KeyLayout(prefix)
    p = processor(redis_client, keys, [])
    assert (await resume_offsets(redis_client, keys, TOPIC, [0, 1])).offsets == {0: 0, 1: 0}
    await p.process(records("text", 0, range(0, 10)) + records("vision", 0, range(10, 50)))
    found = await resume_offsets(redis_client, keys, TOPIC, [0, 1])
    assert found.offsets == {0: 10, 1: 0}  # text (fence 9) holds the partition back
    assert found.fences == {("text", "votes/0"): 9, ("vision", "votes/0"): 49}
    # the once-a-second check marks text as processed through 49: it holds nothing back now
    await p.check_fences()
    assert (await resume_offsets(redis_client, keys, TOPIC, [0])).offsets == {0: 50}
    # an arena recorded for the partition without a fence (Redis lost it): from the start
    await redis_client.delete(keys.fence("vision"), keys.through("vision"))
    assert (await resume_offsets(redis_client, keys, TOPIC, [0])).offsets == {0: 0}


async def test_the_processor_notices_that_redis_lost_applied_votes(
    redis_client: aioredis.Redis, prefix: str
) -> None:
    keys = KeyLayout(prefix)
    lost: list[StateLost] = []
    p = processor(redis_client, keys, lost)
    await p.process(records("text", 2, range(0, 20)))
    await p.check_fences()
    assert lost == []
    await redis_client.hset(keys.fence("text"), "votes/2", 11)  # the last writes lost
    await p.check_fences()  # also when no votes come
    assert [e.fields for e in lost] == [["votes/2"]]
    # the processor forgot what it applied; seeded again as the worker repositions
    found = await resume_offsets(redis_client, keys, TOPIC, [2])
    assert found.offsets == {2: 12}
    p.repositioned(found)
    await p.process(records("text", 2, range(12, 20)))  # re-read: applied again, no loss
    assert len(lost) == 1
    await redis_client.delete(keys.fence("text"))  # wiped: noticed by the next batch
    await p.process(records("text", 2, range(20, 25)))
    assert [e.fields for e in lost][-1] == ["votes/2"] and len(lost) == 2
    assert await redis_client.hget(keys.fence("text"), "votes/2") is None  # batch not applied
