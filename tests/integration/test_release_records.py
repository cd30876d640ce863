"""Releases in Redis and their topic (services/common/release_records.py), real Kafka and Redis:
two publishers of one id at once write it once; a release too large for one record is refused
before anything is written; a wiped key space gets every release back, by board."""

from __future__ import annotations

import asyncio
from typing import Any

import redis.asyncio as aioredis

from services.common.records import Book, RecordWriter, Replayer
from services.common.release_records import ReleaseRecords, ReleaseTooLarge
from shared.keys import KeyLayout
from shared.releases import Release
from shared.standings import StoredStandings
from shared.topics import Topics
from tests.support.infra import Infra


def release(rid: str, board: str, models: int, name_len: int = 8) -> Release:
    rows = [{"model": f"m{i:0{name_len}d}", "rank": i + 1, "rank_ub": i + 1,
             "score": 1500.0 - i, "ci_low": 1490.0 - i, "ci_high": 1510.0 - i, "votes": 100,
             "wins": 50, "losses": 50, "ties": 0, "preliminary": False} for i in range(models)]
    arena, view = board.split("/")
    standings = StoredStandings.model_validate({
        "board": board, "arena": arena, "view": view, "updated_at": "2026-12-01T00:00:00+00:00",
        "models": models, "votes": 100 * models, "converged": True, "connected": True,
        "position": None, "rows": rows})
    return Release(id=rid, board=board, published_at="2026-12-01T00:00:00+00:00", note=None,
                   methodology={"scale": 400.0}, standings=standings, registry={})


def marker(name: str) -> Any:
    async def key() -> str:
        return name
    return key


async def test_releases_are_written_once_refused_when_too_large_and_replayed(
    infra: Infra, prefix: str, redis_client: aioredis.Redis
) -> None:
    keys, topics = KeyLayout(prefix), Topics(prefix + ".")
    writer = RecordWriter(infra.kafka_bootstrap, [topics.releases])
    try:
        store = ReleaseRecords(redis_client, keys, writer, topics.releases)
        first, rival = release("r1", "text/overall", 3), release("r1", "text/overall", 4)
        results = await asyncio.gather(store.publish(first), store.publish(rival))
        assert sorted(results) == [False, True], "exactly one of two publishers of one id"
        kept = await store.get("r1")
        assert kept is not None and kept in (first, rival)
        assert not await store.publish(release("r1", "text/overall", 5)), "immutable"
        assert await store.get("r1") == kept

        huge = release("r-huge", "text/overall", 6000, name_len=60)
        try:
            await store.publish(huge)
        except ReleaseTooLarge as exc:
            assert "bytes" in str(exc)
        else:
            raise AssertionError("a release larger than one record was accepted")
        assert await store.get("r-huge") is None
        assert not await redis_client.exists(keys.release_claim("r-huge"))

        assert await store.publish(release("r2", "text/coding", 2))
        before = {(s.board, s.id) for s in await store.summaries()}
        assert before == {("text/overall", "r1"), ("text/coding", "r2")}

        async for key in redis_client.scan_iter(match=f"{prefix}:*"):
            await redis_client.delete(key)
        assert await store.summaries() == []
        replayer = Replayer(redis_client, infra.kafka_bootstrap,
                            [Book(topics.releases, store.apply_records,
                                  marker(keys.restored(topics.releases)))], 60)
        assert await replayer.restore_missing() == 1
        assert {(s.board, s.id) for s in await store.summaries()} == before
        assert await store.get("r1") == kept
        assert [s.id for s in await store.summaries("text/coding")] == ["r2"]
    finally:
        await writer.stop()
