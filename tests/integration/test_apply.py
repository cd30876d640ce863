"""The fenced Lua apply and the processor on a real Redis server."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime

import numpy as np
import orjson
import pytest
import redis.asyncio as aioredis

from services.demo.arena import SyntheticArena
from services.rating.arena_slices import RawRecord, RecentWindow, decode, fold
from services.rating.engine import BattleColumns, EloState, PairCounts
from services.rating.packed_counts import INCREMENT
from services.rating.processor import Outputs, RatingProcessor, Tuning
from services.rating.store import (
    ALREADY_APPLIED,
    APPLIED,
    APPLY_SCRIPT,
    BEHIND,
    PARTLY_APPLIED,
    STALE,
    ApplyResult,
    RatingStore,
)
from shared.keys import KeyLayout, count_field, parse_count_field, text
from tests.support.counts import board_counts


def records(n: int, seed: int = 1, partition: int = 0) -> list[RawRecord]:
    arena = SyntheticArena(seed=seed, strengths={f"m{i}": 1000 + 40 * i for i in range(8)})
    return [
        RawRecord("votes", partition, offset, orjson.dumps(v))
        for offset, v in enumerate(arena.votes(n))
    ]


def expected_counts(recs: Sequence[RawRecord], view: str = "overall") -> Counter[str]:
    votes, _ = decode(recs)
    return Counter(
        count_field(v.model_a, v.model_b, v.winner) for _, v in votes if view in v.views()
    )


async def stored_counts(client: aioredis.Redis, keys: KeyLayout, view: str) -> Counter[str]:
    return await board_counts(client, keys, "text", view)


async def test_apply_is_exact_and_fenced(redis_client: aioredis.Redis, prefix: str) -> None:
    keys = KeyLayout(prefix)
    store = RatingStore(redis_client, keys)
    recs = records(2000)
    votes, _ = decode(recs)
    [first] = fold(votes[:1500])
    assert await store.apply(first, 0) == ApplyResult(APPLIED, 1499, 1)
    assert await stored_counts(redis_client, keys, "overall") == expected_counts(recs[:1500])

    assert await store.apply(first, 1) == ApplyResult(ALREADY_APPLIED, 1499, 1)  # a replay
    [overlap] = fold(votes[1000:])
    assert await store.apply(overlap, 1) == ApplyResult(PARTLY_APPLIED, 1499, 1)
    assert await store.apply(overlap, 0) == ApplyResult(STALE, -1, 1)  # a stale writer
    assert await stored_counts(redis_client, keys, "overall") == expected_counts(recs[:1500])
    for view in ("coding", "lang:en"):
        assert await stored_counts(redis_client, keys, view) == expected_counts(recs[:1500], view)


async def test_processor_counts_each_vote_once_across_overlapping_replays(
    redis_client: aioredis.Redis, prefix: str
) -> None:
    keys = KeyLayout(prefix)
    published: list[bytes] = []

    async def publish(values: Sequence[bytes]) -> None:
        published.extend(values)

    processor = RatingProcessor(RatingStore(redis_client, keys), Outputs(publish, publish))
    recs = records(3000, seed=7)
    for window in (recs[0:1000], recs[500:1500], recs[0:800], recs[1200:3000], recs[2999:]):
        await processor.process(window)
    for view in ("overall", "coding", "math", "lang:zh"):
        assert await stored_counts(redis_client, keys, view) == expected_counts(recs, view)
    doc = orjson.loads(await redis_client.get(keys.standings("text", "overall")))
    assert doc["votes"] == 3000
    replayed_elo = EloState()
    for _, v in decode(recs)[0]:
        replayed_elo.apply(v.model_a, v.model_b, v.winner)
    assert {r["model"]: r["elo"] for r in doc["rows"]} == pytest.approx(replayed_elo.ratings)
    assert sum(row["votes"] for row in doc["rows"]) == 2 * 3000
    assert published, "rank changes were published for the new board"


async def test_poison_records_are_dead_lettered_and_good_ones_counted(
    redis_client: aioredis.Redis, prefix: str
) -> None:
    keys = KeyLayout(prefix)
    dead: list[bytes] = []

    async def to_dlq(values: Sequence[bytes]) -> None:
        dead.extend(values)

    async def ignore(values: Sequence[bytes]) -> None:
        return None

    processor = RatingProcessor(RatingStore(redis_client, keys), Outputs(to_dlq, ignore))
    good = records(100)
    poison = [RawRecord("votes", 0, 100 + i, b'{"vote_id": 1}') for i in range(10)]
    await processor.process([*good, *poison])
    assert len(dead) == 10
    assert {orjson.loads(d)["offset"] for d in dead} == set(range(100, 110))
    assert await stored_counts(redis_client, keys, "overall") == expected_counts(good)


async def test_two_writers_taking_turns_stay_exact(redis_client: aioredis.Redis, prefix: str
                                                   ) -> None:
    """As in a rebalance: two workers apply alternate stretches of one partition. Each must
    notice the other's applies (version check), reload, and keep counts and Elo exact."""
    keys = KeyLayout(prefix)

    async def ignore(values: Sequence[bytes]) -> None:
        return None

    first, second = (RatingProcessor(RatingStore(redis_client, keys), Outputs(ignore, ignore))
                     for _ in range(2))
    recs = records(2000, seed=11)
    for i, start in enumerate(range(0, 2000, 250)):
        worker = first if i % 2 == 0 else second
        await worker.process(recs[max(0, start - 50):start + 250])  # with some overlap
    assert await stored_counts(redis_client, keys, "overall") == expected_counts(recs)
    doc = orjson.loads(await redis_client.get(keys.standings("text", "overall")))
    sequential = EloState()
    for _, v in decode(recs)[0]:
        sequential.apply(v.model_a, v.model_b, v.winner)
    assert {r["model"]: r["elo"] for r in doc["rows"]} == pytest.approx(sequential.ratings)


async def test_a_copy_with_a_required_fence_never_leaves_a_gap(
    redis_client: aioredis.Redis, prefix: str
) -> None:
    store = RatingStore(redis_client, KeyLayout(prefix))
    votes, _ = decode(records(300))
    [early], [late] = fold(votes[:100]), fold(votes[200:])
    # the generation holds nothing yet: a copy of offsets 200.. that requires 199 is refused
    assert await store.apply(late, 0, required_fence=199) == ApplyResult(BEHIND, -1, 0)
    assert await stored_counts(redis_client, KeyLayout(prefix), "overall") == Counter()
    assert await store.apply(early, 0) == ApplyResult(APPLIED, 99, 1)
    assert await store.apply(late, 1, required_fence=199) == ApplyResult(BEHIND, 99, 1)
    [middle] = fold(votes[100:200])
    assert await store.apply(middle, 1, required_fence=99) == ApplyResult(APPLIED, 199, 2)
    assert await store.apply(late, 2, required_fence=199) == ApplyResult(APPLIED, 299, 3)
    recs = records(300)
    assert await stored_counts(redis_client, KeyLayout(prefix), "overall") == expected_counts(recs)


def styled_records(n: int, seed: int = 3) -> list[RawRecord]:
    arena = SyntheticArena(seed=seed, strengths={f"m{i}": 1000 + 40 * i for i in range(8)})
    out = []
    for offset, v in enumerate(arena.votes(n)):
        if offset % 3:  # every third vote without style
            v["style"] = {"model_a": {"tokens": 100 + offset, "bold": offset % 4},
                          "model_b": {"tokens": 50 + 2 * offset, "lists": offset % 5}}
        out.append(RawRecord("votes", 0, offset, orjson.dumps(v)))
    return out


def expected_battles(recs: Sequence[RawRecord], view: str = "overall") -> BattleColumns:
    votes, _ = decode(recs)
    columns = BattleColumns()
    for _, v in votes:
        if v.style is not None and v.anonymous and view in v.views():
            columns.append(v.model_a, v.model_b, v.winner, v.style.model_a.model_dump(),
                           v.style.model_b.model_dump())
    return columns


async def test_style_battles_are_appended_exactly_once(
    redis_client: aioredis.Redis, prefix: str
) -> None:
    keys = KeyLayout(prefix)
    store = RatingStore(redis_client, keys)
    recs = styled_records(900)
    votes, _ = decode(recs)
    [first] = fold(votes[:600])
    assert (await store.apply(first, 0)).status == APPLIED
    assert (await store.apply(first, 1)).status == ALREADY_APPLIED  # a replay appends nothing
    [overlap] = fold(votes[400:])
    assert (await store.apply(overlap, 1)).status == PARTLY_APPLIED
    [rest] = fold(votes[400:], after={("text", "votes", 0): 599})
    assert (await store.apply(rest, 1)).status == APPLIED
    assert await redis_client.llen(keys.battles("text", "overall")) == 2  # one chunk per apply
    version, battles = await store.load_battles("text", "overall")
    assert version == 2
    assert battles == expected_battles(recs)
    assert len(battles) > 500
    assert battles.counts().total == len(battles)


async def test_style_boards_refit_on_demand_and_the_cache_equals_redis(
    redis_client: aioredis.Redis, prefix: str
) -> None:
    keys = KeyLayout(prefix)
    changes: list[bytes] = []

    async def publish(values: Sequence[bytes]) -> None:
        changes.extend(values)

    processor = RatingProcessor(RatingStore(redis_client, keys), Outputs(publish, publish))
    recs = styled_records(1200, seed=5)
    await processor.process(recs[:700])
    assert await processor.refit_style_boards() >= 1  # overall and the categories it touched
    assert await processor.refit_style_boards() == 0  # nothing new since
    await processor.process(recs[500:])  # a replay overlapping what was applied
    assert await processor.refit_style_boards() >= 1
    store = RatingStore(redis_client, keys)
    _, stored = await store.load_battles("text", "overall")
    assert stored == expected_battles(recs)
    cached = processor.counts.cached("text").battles["overall"]  # extended after each apply
    assert cached == stored
    doc = orjson.loads(await redis_client.get(keys.standings("text", "overall+style")))
    assert doc["board"] == "text/overall+style" and doc["battles"] == len(stored)
    assert set(doc["style_coefficients"]) == {"tokens", "headers", "lists", "bold"}
    assert {"value", "ci_low", "ci_high"} <= set(doc["style_coefficients"]["tokens"])
    assert b"overall+style" in await redis_client.smembers(keys.views("text"))
    assert any(orjson.loads(c)["board"] == "text/overall+style" for c in changes)
    # a fresh worker (a restart) loads the same battles from Redis
    fresh = RatingProcessor(RatingStore(redis_client, keys), Outputs(publish, publish))
    assert await fresh.style.snapshot("text", "overall") == stored


async def test_packed_counts_stay_exact_as_models_join_and_slices_replay(
    redis_client: aioredis.Redis, prefix: str
) -> None:
    """Models get numbers in the apply that first counts them, once, however often a slice is
    replayed; the counts decode to what the votes say, for models added later too."""
    keys = KeyLayout(prefix)
    store = RatingStore(redis_client, keys)
    early = records(600, seed=5)  # m0..m7
    later_arena = SyntheticArena(seed=6, strengths={f"m{i}": 900 + 35 * i for i in range(12)})
    later = [RawRecord("votes", 0, 600 + i, orjson.dumps(v))
             for i, v in enumerate(later_arena.votes(900))]  # adds m8..m11
    votes, _ = decode([*early, *later])
    version = 0
    for start, stop in ((0, 400), (200, 600), (0, 600), (600, 1100), (900, 1500), (0, 1500)):
        for sl in fold(votes[start:stop]):
            result = await store.apply(sl, version)
            if result.status == PARTLY_APPLIED:
                [sl] = fold(votes[start:stop], after={("text", "votes", 0): result.fence})
                result = await store.apply(sl, version)
            version = result.version
    assert version == 4  # 0..399, 400..599 (after a partial replay), 600..1099, 1100..1499
    index = {k.decode(): int(v) for k, v in (await redis_client.hgetall(
        keys.model_index("text"))).items()}
    assert sorted(index.values()) == list(range(12))
    assert {m for m, n in index.items() if n < 8} == {f"m{i}" for i in range(8)}
    snapshot = await store.load("text", ["overall", "coding", "lang:en"])
    for view in ("overall", "coding", "lang:en"):
        want = expected_counts([*early, *later], view)
        assert await stored_counts(redis_client, keys, view) == want
        assert snapshot.counts[view] == PairCounts.from_triples(
            {parse_count_field(f): n for f, n in want.items()})
        assert await store.read_counts("text", view) == snapshot.counts[view].triples()


async def test_malformed_count_arguments_write_nothing(
    redis_client: aioredis.Redis, prefix: str
) -> None:
    """The script checks the packed increments before any write (Lua has no rollback)."""
    keys = KeyLayout(prefix)
    script_keys = [keys.fence("text"), keys.views("text"), keys.model_index("text"),
                   keys.counts("text", "overall"), keys.elo("text", "overall"),
                   keys.battles("text", "overall")]

    def packed(*rows: tuple[int, int, int, int, int]) -> bytes:
        return np.array(list(rows), dtype=INCREMENT).tobytes()

    good = packed((1, 0, 1, 0, 2))
    bad = [(["a", "b"], good + packed((1, 1, 1, 0, 1))),  # a self-battle
           (["a", "b"], good + packed((2, 0, 1, 0, 1))),  # no such view
           (["a", "b"], good + packed((1, 0, 2, 0, 1))),  # no such model
           (["a", "b"], good + packed((1, 0, 1, 4, 1))),  # no such outcome
           (["a", "b"], good + good[:-1]),  # a partial record
           (["a", "a"], good)]  # a model listed twice
    for models, increments in bad:
        argv = [0, "votes/0", 0, 0, -1, 1, "overall", len(models), *models, increments,
                1, "a", "1001.0", 0, 0]
        with pytest.raises(aioredis.ResponseError, match="malformed count"):
            await redis_client.eval(APPLY_SCRIPT, len(script_keys), *script_keys, *argv)
    # a recent-window section that names more buckets than keys, or ends elsewhere
    bucket = keys.sampling_recent("text", "overall", 1)
    for recent, extra_keys in (([9, 1, "a", 1], []), ([9, 2, "a", 1], [bucket]),
                               ([9, 1, "a", 1, 9, 0], [bucket])):
        argv = [0, "votes/0", 0, 0, -1, 1, "overall", 2, "b", "a", good,
                1, "a", "1001.0", *recent, len(recent), 0]
        with pytest.raises(aioredis.ResponseError, match="malformed count"):
            await redis_client.eval(APPLY_SCRIPT, len(script_keys) + len(extra_keys),
                                    *script_keys, *extra_keys, *argv)
    assert await redis_client.exists(*script_keys, bucket) == 0
    argv = [0, "votes/0", 0, 0, -1, 1, "overall", 2, "b", "a", good, 1, "a", "1001.0", 0, 0]
    assert await redis_client.eval(APPLY_SCRIPT, len(script_keys), *script_keys, *argv) == [
        1, 0, 1]
    assert await stored_counts(redis_client, keys, "overall") == Counter({"a|b|model_b": 2})


async def test_an_arena_numbers_at_most_8192_models(redis_client: aioredis.Redis, prefix: str
                                                    ) -> None:
    keys = KeyLayout(prefix)
    store = RatingStore(redis_client, keys)
    await redis_client.hset(keys.model_index("text"),
                            mapping={f"x{i}": i for i in range(8191)})
    [sl] = fold(decode(records(50))[0])  # 8 new models
    with pytest.raises(aioredis.ResponseError, match="at most 8192 models"):
        await store.apply(sl, 0)
    assert await redis_client.hlen(keys.model_index("text")) == 8191
    assert await redis_client.exists(keys.fence("text"), keys.counts("text", "overall")) == 0


async def test_a_failing_board_refit_leaves_the_other_boards_written(
    redis_client: aioredis.Redis, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The boards of a batch are refitted together: one whose fit raises is logged and left
    as it was; every other board is written and its rank changes are published."""
    import services.rating.board_refits as processor_module

    keys = KeyLayout(prefix)
    changes: list[bytes] = []

    async def ignore(values: Sequence[bytes]) -> None:
        return None

    async def publish_changes(values: Sequence[bytes]) -> None:
        changes.extend(values)

    real_fit = processor_module.fit_board

    def fit_board(counts: PairCounts, *args: object, **kwargs: object) -> object:
        if counts is broken[0]:
            raise FloatingPointError("a broken board")
        return real_fit(counts, *args, **kwargs)  # type: ignore[arg-type]

    broken: list[PairCounts | None] = [None]
    monkeypatch.setattr(processor_module, "fit_board", fit_board)
    processor = RatingProcessor(RatingStore(redis_client, keys), Outputs(ignore, publish_changes))
    recs = records(1500, seed=11)
    await processor.process(recs[:500])
    broken[0] = processor.counts.cached("text").counts["coding"]  # the coding board breaks
    coding_before = await redis_client.get(keys.standings("text", "coding"))
    overall_before = orjson.loads(await redis_client.get(keys.standings("text", "overall")))
    changes.clear()
    await processor.process(recs[500:])
    overall = orjson.loads(await redis_client.get(keys.standings("text", "overall")))
    assert overall["votes"] > overall_before["votes"]
    assert await redis_client.get(keys.standings("text", "coding")) == coding_before
    boards = {orjson.loads(c)["board"] for c in changes}
    assert boards, "1,000 more votes move some model on some board"
    assert "text/coding" not in boards
    english = orjson.loads(await redis_client.get(keys.standings("text", "lang:en")))
    assert english["votes"] == sum(1 for v in decode(recs)[0] if "lang:en" in v[1].views())


class ConnectionLostOnce(RatingStore):
    """A store whose connection is lost once, at the first standings write after ``armed`` is
    set: as Redis restarting between a batch's apply and its refits."""

    armed = False

    async def write_standings(self, arena: str, view: str, document: bytes) -> None:
        if self.armed:
            self.armed = False
            raise aioredis.ConnectionError("connection lost (injected)")
        await super().write_standings(arena, view, document)


async def test_boards_applied_before_a_lost_connection_are_refitted_by_the_retry(
    redis_client: aioredis.Redis, prefix: str
) -> None:
    """The retry of the batch finds its slices already applied; the boards whose standings the
    lost connection kept from being written must still be refitted (no later vote may come)."""
    keys = KeyLayout(prefix)

    async def ignore(values: Sequence[bytes]) -> None:
        return None

    store = ConnectionLostOnce(redis_client, keys)
    processor = RatingProcessor(store, Outputs(ignore, ignore), Tuning(redis_retry_s=0.01))
    recs = records(1000, seed=41)
    await processor.process(recs[:500])
    store.armed = True
    await processor.process(recs[500:])
    assert not store.armed
    for view in [text(v) for v in await redis_client.smembers(keys.views("text"))]:
        doc = orjson.loads(await redis_client.get(keys.standings("text", view)))
        assert doc["votes"] == sum(expected_counts(recs, view).values()), view


def received_records(n: int, received_at: float) -> list[RawRecord]:
    """Votes as ingest writes them: stamped with the time it received them."""
    arena = SyntheticArena(seed=5, strengths={f"m{i}": 1000 + 40 * i for i in range(6)})
    stamp = datetime.fromtimestamp(received_at, UTC).isoformat()
    return [RawRecord("votes", 0, offset, orjson.dumps({**v, "received_at": stamp}))
            for offset, v in enumerate(arena.votes(n))]


def appearances(recs: Sequence[RawRecord], view: str = "overall") -> dict[bytes, bytes]:
    """model -> battles of the view it appeared in, as the bucket hash holds them."""
    votes, _ = decode(recs)
    seen = Counter(m for _, v in votes if view in v.views() for m in (v.model_a, v.model_b))
    return {m.encode(): str(n).encode() for m, n in seen.items()}


async def test_recent_window_buckets_are_written_once_with_the_counts(
    redis_client: aioredis.Redis, prefix: str
) -> None:
    """The hourly buckets of the sampling report's recent window go in the fenced apply: a
    replayed or overlapping slice does not count twice, a replay into an empty Redis gives the
    same buckets, and votes older than the window write none."""
    now = 1_800_000_000.0 + 1234  # the clock the store judges the window by
    keys = KeyLayout(prefix)
    store = RatingStore(redis_client, keys, 86_400, lambda: now)
    recs = received_records(900, now - 60)
    votes, _ = decode(recs)
    [first] = fold(votes[:600])
    assert (await store.apply(first, 0)).status == APPLIED
    assert (await store.apply(first, 1)).status == ALREADY_APPLIED  # a batch re-read
    [overlap] = fold(votes[400:])
    assert (await store.apply(overlap, 1)).status == PARTLY_APPLIED
    [rest] = fold(votes[400:], after={("text", "votes", 0): 599})
    assert (await store.apply(rest, 1)).status == APPLIED
    bucket = keys.sampling_recent("text", "overall", int(now - 60) // 3600)
    assert await redis_client.hgetall(bucket) == appearances(recs)
    assert await redis_client.expiretime(bucket) == RecentWindow(86_400, now).expire_at(
        int(now - 60) // 3600)
    math = keys.sampling_recent("text", "math", int(now - 60) // 3600)
    assert await redis_client.hgetall(math) == appearances(recs, "math") != {}

    wiped = KeyLayout(prefix + "-wiped")  # Redis lost it all: the topic replayed from the start
    [everything] = fold(votes)
    assert (await RatingStore(redis_client, wiped, 86_400, lambda: now + 600).apply(
        everything, 0)).status == APPLIED
    assert await redis_client.hgetall(
        wiped.sampling_recent("text", "overall", int(now - 60) // 3600)) == appearances(recs)

    old = received_records(50, now - 3 * 86_400)  # counted on the board, not in the window
    old = [RawRecord("votes", 1, r.offset, r.value) for r in old]
    [stale] = fold(decode(old)[0])
    assert (await store.apply(stale, 2)).status == APPLIED
    assert await redis_client.keys(keys.sampling_recent("text", "*", int(now) // 3600 - 72)) == []
