"""Ingest's dedupe memory on real Redis: vote ids in per-shard, per-window sets, found by the
pipelined lookup and by the rate-limit script's lookup alike, for at least one window."""

from __future__ import annotations

import redis.asyncio as aioredis

from services.ingest.limits import LimitRequest, RateLimiter
from services.ingest.vote_ids import DEDUPE_EXPIRY_MARGIN_S, VoteIdMemory
from shared.events import Vote
from shared.keys import DEDUPE_SHARDS, KeyLayout, dedupe_shard
from shared.settings import IngestSettings

WINDOW = 3_600
START = 1_000 * WINDOW  # the start of a bucket


def ids(n: int, tag: str = "v") -> list[str]:
    return [f"{tag}-{i}" for i in range(n)]


async def test_remembered_ids_are_seen_for_at_least_one_window(
    prefix: str, redis_client: aioredis.Redis
) -> None:
    now = [START + WINDOW - 1.0]  # the last second of a bucket
    memory = VoteIdMemory(redis_client, KeyLayout(prefix), WINDOW, clock=lambda: now[0])
    first = ids(200)
    await memory.remember(first)
    assert await memory.seen([*first, "new"]) == set(first)
    now[0] += 2.0  # the next bucket
    assert await memory.seen(first) == set(first)
    now[0] = START + 2 * WINDOW - 1.0  # just short of the window past the bucket's end
    assert await memory.seen(first[:3]) == set(first[:3])
    # the sets expire two windows after their bucket began (plus a margin), not before
    keys = KeyLayout(prefix)
    shards = {dedupe_shard(v) for v in first}
    assert len(shards) == DEDUPE_SHARDS  # 200 ids cover every shard
    for shard in shards:  # remembered 1 s before the bucket's end: TTL = 1 window + 1 s + margin
        ttl = await redis_client.ttl(keys.dedupe_ids(shard, START // WINDOW))
        assert WINDOW + DEDUPE_EXPIRY_MARGIN_S - 5 <= ttl <= WINDOW + 1 + DEDUPE_EXPIRY_MARGIN_S
    assert sum([await redis_client.scard(keys.dedupe_ids(s, START // WINDOW))
                for s in shards]) == 200
    now[0] = START + 3 * WINDOW  # two buckets on: no longer looked in (and expired in Redis)
    assert await memory.seen(first[:3]) == set()


async def test_an_instance_whose_clock_is_behind_still_finds_the_ids(
    prefix: str, redis_client: aioredis.Redis
) -> None:
    ahead = VoteIdMemory(redis_client, KeyLayout(prefix), WINDOW, clock=lambda: START + 0.5)
    behind = VoteIdMemory(redis_client, KeyLayout(prefix), WINDOW, clock=lambda: START - 0.5)
    await ahead.remember(["x", "y"])
    assert await behind.seen(["x", "y", "z"]) == {"x", "y"}
    # and so does the rate-limit script's lookup (the one-trip path)
    settings = IngestSettings(redis_url="redis://unused", ingest_require_auth=False)
    limiter = RateLimiter(redis_client, KeyLayout(prefix), settings, clock=lambda: START - 0.5)
    votes = [Vote.model_validate({"vote_id": i, "arena": "text", "model_a": "a", "model_b": "b",
                                  "winner": "model_a"}) for i in ("x", "y", "z")]
    verdict = (await limiter.check_many([LimitRequest("1.2.3.4", "c", votes)],
                                        lookup=behind.lookup_plan))[0]
    assert verdict.allowed and [v.vote_id for v in verdict.votes] == ["z"]


async def test_the_rate_limit_script_looks_up_the_same_sets(
    prefix: str, redis_client: aioredis.Redis
) -> None:
    """The one-trip path: the limits script finds the ids remembered, charges only new votes."""
    now = START + 10.0
    keys = KeyLayout(prefix)
    memory = VoteIdMemory(redis_client, keys, WINDOW, clock=lambda: now)
    settings = IngestSettings(redis_url="redis://unused", ingest_require_auth=False,
                              ingest_voter_burst=3, ingest_voter_votes_per_s=0.001)
    limiter = RateLimiter(redis_client, keys, settings, clock=lambda: now)
    votes = [Vote.model_validate({"vote_id": f"id-{i}", "arena": "text", "model_a": "a",
                                  "model_b": "b", "winner": "model_a", "voter": "u"})
             for i in range(6)]
    await memory.remember([v.vote_id for v in votes[:3]])
    # three remembered, three new: only the new ones are charged (the voter's burst is 3)
    verdicts = await limiter.check_many([LimitRequest("1.2.3.4", "c", votes)],
                                        lookup=memory.lookup_plan)
    assert verdicts[0].allowed
    assert [v.vote_id for v in verdicts[0].votes] == ["id-3", "id-4", "id-5"]
    # the burst is now spent: a further new vote of the voter is refused, a known one is free
    more = Vote.model_validate({**votes[0].model_dump(), "vote_id": "id-9"})
    verdicts = await limiter.check_many(
        [LimitRequest("1.2.3.4", "c", [more]), LimitRequest("1.2.3.4", "c", votes[:1])],
        lookup=memory.lookup_plan)
    assert not verdicts[0].allowed and verdicts[0].limit == "voter:u"
    assert verdicts[1].allowed and verdicts[1].votes == ()


async def test_a_large_group_is_remembered_whole(
    prefix: str, redis_client: aioredis.Redis
) -> None:
    """20,000 ids: over 1,000 in each shard's set, more than one SADD of the script each."""
    memory = VoteIdMemory(redis_client, KeyLayout(prefix), WINDOW, clock=lambda: START + 5.0)
    many = ids(20_000, "big")
    await memory.remember(many)
    assert await memory.seen([*many, "other"]) == set(many)
