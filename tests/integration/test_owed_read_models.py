"""Read models a refit leaves unwritten (matrices inside their interval, history points inside
theirs) are owed: written once due although no batch follows, never over what another worker
wrote since; the same fence for the style boards' timer (issue #16, finding 5). The processor on
a real Redis, with a clock of the test's."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
import redis.asyncio as aioredis

from services.demo.arena import SyntheticArena
from services.rating.arena_slices import RawRecord
from services.rating.engine import PairCounts, fit_board
from services.rating.processor import Outputs, RatingProcessor
from services.rating.read_models import ArenaFence, ReadModelWriter
from services.rating.standings import standings_rows
from services.rating.store import VERSION_FIELD, RatingStore
from shared.keys import KeyLayout
from tests.integration.test_apply import expected_battles, records, styled_records
from tests.unit.engine.synthetic import counts_of

VIEWS = ("overall", "coding", "lang:en")


class Clock:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def ignore(values: Sequence[bytes]) -> None:
    return None


def processor(client: aioredis.Redis, keys: KeyLayout, clock: Clock, matrices_s: float,
              history_s: float) -> RatingProcessor:
    writer = ReadModelWriter(client, keys, history_s, 100, clock, matrices_interval_s=matrices_s)
    return RatingProcessor(RatingStore(client, keys), Outputs(ignore, ignore, writer))


async def matrix_battles(client: aioredis.Redis, keys: KeyLayout, view: str) -> int:
    doc = orjson.loads(await client.get(keys.matrices("text", view)))
    return sum(map(sum, doc["battles"])) // 2


async def board_votes(client: aioredis.Redis, keys: KeyLayout, view: str) -> int:
    votes: int = orjson.loads(await client.get(keys.standings("text", view)))["votes"]
    return votes


async def last_points(client: aioredis.Redis, keys: KeyLayout, view: str,
                      rows: Sequence[dict[str, Any]] | None = None
                      ) -> dict[str, dict[str, Any]]:
    if rows is None:
        rows = orjson.loads(await client.get(keys.standings("text", view)))["rows"]
    out = {}
    for row in rows:
        raw = await client.lindex(keys.history("text", view, row["model"]), -1)
        out[row["model"]] = orjson.loads(raw)
    return out


async def history_lengths(client: aioredis.Redis, keys: KeyLayout, view: str) -> dict[str, int]:
    rows = orjson.loads(await client.get(keys.standings("text", view)))["rows"]
    return {r["model"]: await client.llen(keys.history("text", view, r["model"])) for r in rows}


async def test_matrices_left_inside_their_interval_are_written_once_due(
    redis_client: aioredis.Redis, prefix: str
) -> None:
    keys, clock = KeyLayout(prefix), Clock()
    worker = processor(redis_client, keys, clock, matrices_s=2.0, history_s=0)
    recs = records(1000, seed=5)
    await worker.process(recs[:400])
    clock.now += 0.5
    await worker.process(recs[400:])  # inside the interval: the matrices are owed
    assert await matrix_battles(redis_client, keys, "overall") == 400
    assert await board_votes(redis_client, keys, "overall") == 1000
    assert worker.read_models_due_in() == 1.5

    assert await worker.flush_read_models() == 0  # not due yet
    clock.now += 1.5
    assert await worker.flush_read_models() >= len(VIEWS)  # due: no batch needed
    for view in VIEWS:
        assert await matrix_battles(redis_client, keys, view) == await board_votes(
            redis_client, keys, view)
    assert worker.read_models_due_in() is None  # nothing owed any more


async def test_history_ends_with_the_last_state_once_due_and_only_once(
    redis_client: aioredis.Redis, prefix: str
) -> None:
    keys, clock = KeyLayout(prefix), Clock()
    worker = processor(redis_client, keys, clock, matrices_s=0, history_s=10.0)
    recs = records(1200, seed=9)
    await worker.process(recs[:300])  # every model's first point
    for start in range(300, 1200, 300):  # then points at rank changes only
        clock.now += 1
        await worker.process(recs[start:start + 300])
    rows = orjson.loads(await redis_client.get(keys.standings("text", "overall")))["rows"]
    votes = {r["model"]: r["votes"] for r in rows}
    assert {m: p["votes"] for m, p in (await last_points(redis_client, keys, "overall")).items()
            } != votes, "some model has no point of the last state before the flush"

    assert await worker.flush_read_models() == 0  # within the interval of every first point
    clock.now += 10
    assert await worker.flush_read_models() >= len(VIEWS)
    for view in VIEWS:
        rows = orjson.loads(await redis_client.get(keys.standings("text", view)))["rows"]
        last = await last_points(redis_client, keys, view)
        assert {m: p["votes"] for m, p in last.items()} == {r["model"]: r["votes"] for r in rows}
        assert {m: p["score"] for m, p in last.items()} == {r["model"]: r["score"] for r in rows}
    lengths = await history_lengths(redis_client, keys, "overall")
    clock.now += 60
    await worker.flush_read_models()
    assert await history_lengths(redis_client, keys, "overall") == lengths  # recorded once
    assert worker.read_models_due_in() is None


async def test_an_owed_write_never_overwrites_what_another_worker_wrote_since(
    redis_client: aioredis.Redis, prefix: str
) -> None:
    """As after a rebalance: the partition's new owner applied and wrote newer matrices; the
    old owner's owed matrices are dropped, not written over them."""
    keys, clock = KeyLayout(prefix), Clock()
    old_owner = processor(redis_client, keys, clock, matrices_s=2.0, history_s=0)
    new_owner = processor(redis_client, keys, Clock(), matrices_s=2.0, history_s=0)
    recs = records(1000, seed=13)
    await old_owner.process(recs[:400])
    clock.now += 0.5
    await old_owner.process(recs[400:700])  # owed: the matrices show 400
    await new_owner.process(recs[700:])
    assert await matrix_battles(redis_client, keys, "overall") == 1000

    clock.now += 5
    assert await old_owner.flush_read_models() == 0
    assert await matrix_battles(redis_client, keys, "overall") == 1000
    assert old_owner.read_models_due_in() is None  # dropped, not retried


async def test_an_owed_write_is_made_by_the_old_owner_when_nobody_moved_the_arena(
    redis_client: aioredis.Redis, prefix: str
) -> None:
    """The fence is the arena's version, not the assignment: if nobody applied anything since,
    what the old owner writes is what the new owner would, and the board is not left stale."""
    keys, clock = KeyLayout(prefix), Clock()
    worker = processor(redis_client, keys, clock, matrices_s=2.0, history_s=0)
    recs = records(600, seed=17)
    await worker.process(recs[:300])
    clock.now += 0.5
    await worker.process(recs[300:])
    vision = SyntheticArena(arena="vision", seed=19)
    other_arena = [RawRecord("votes", 1, offset, orjson.dumps(v))
                   for offset, v in enumerate(vision.votes(100))]
    await processor(redis_client, keys, Clock(), 0, 0).process(other_arena)  # another arena
    clock.now += 2
    assert await worker.flush_read_models() >= 1
    assert await matrix_battles(redis_client, keys, "overall") == 600


async def test_a_style_refit_of_a_worker_whose_arena_moved_on_writes_nothing(
    redis_client: aioredis.Redis, prefix: str
) -> None:
    """The style timer of a worker that lost the partition: its battles are stale, and the new
    owner's style board must not be overwritten with them."""
    keys = KeyLayout(prefix)
    old_owner, new_owner = (processor(redis_client, keys, Clock(), 0, 0) for _ in range(2))
    recs = styled_records(900, seed=21)
    await old_owner.process(recs[:300])
    assert await old_owner.refit_style_boards() >= 1  # its battles are cached from now on
    await old_owner.process(recs[300:450])  # its style boards are due at its next tick
    await new_owner.process(recs[450:])
    assert await new_owner.refit_style_boards() >= 1
    before = await redis_client.get(keys.standings("text", "overall+style"))
    assert orjson.loads(before)["battles"] == len(expected_battles(recs))

    assert await old_owner.refit_style_boards() == 0
    assert await redis_client.get(keys.standings("text", "overall+style")) == before


async def test_nothing_stays_due_when_every_model_already_has_its_point(
    redis_client: aioredis.Redis, prefix: str
) -> None:
    """Two refits at one instant: the second owes no point (the first wrote them); the flush
    then finds nothing to write and nothing stays due (the timer would spin on it)."""
    keys, clock = KeyLayout(prefix), Clock()
    worker = processor(redis_client, keys, clock, matrices_s=0, history_s=10.0)
    recs = records(600, seed=29)
    await worker.process(recs[:300])
    await worker.process(recs[300:])
    lengths = await history_lengths(redis_client, keys, "overall")
    clock.now += 10
    await worker.flush_read_models()
    assert worker.read_models_due_in() is None
    assert await history_lengths(redis_client, keys, "overall") == lengths


async def test_an_owed_write_survives_the_cached_state_being_dropped(
    redis_client: aioredis.Redis, prefix: str
) -> None:
    """A Redis error drops the worker's cached arenas (an apply may or may not have landed); the
    owed matrices still stand if the counts read back are the ones they were made from."""
    keys, clock = KeyLayout(prefix), Clock()
    worker = processor(redis_client, keys, clock, matrices_s=2.0, history_s=0)
    recs = records(1000, seed=37)
    await worker.process(recs[:400])
    clock.now += 0.5
    await worker.process(recs[400:])
    worker.counts.forget()  # as RatingProcessor._process does on a lost connection
    clock.now += 2
    assert await worker.flush_read_models() >= len(VIEWS)
    assert await matrix_battles(redis_client, keys, "overall") == 1000


async def test_history_points_say_when_the_fit_had_no_score_for_the_model(
    redis_client: aioredis.Redis, prefix: str
) -> None:
    """A newcomer that has only won has no finite score (the ridge puts it thousands of points
    up): its points say ``mle_exists: false``, the others' true; a point written when owed too."""
    keys, clock = KeyLayout(prefix), Clock()
    writer = ReadModelWriter(redis_client, keys, 10.0, 100, clock, matrices_interval_s=0)
    battles = [("a", "b", "model_a"), ("b", "c", "model_a"), ("c", "a", "model_a"),
               ("new", "a", "model_a"), ("new", "b", "model_a")]
    counts = counts_of(battles)
    fit = fit_board(counts)
    now = datetime.now(UTC)
    await writer.after_refit("text", "overall", counts, fit, standings_rows(fit), [], now)
    first = await last_points(redis_client, keys, "overall", standings_rows(fit))
    assert {m: p["mle_exists"] for m, p in first.items()} == {
        "a": True, "b": True, "c": True, "new": False}

    clock.now += 1  # inside the interval: every point is owed, then written at shutdown
    await writer.after_refit("text", "overall", counts, fit, standings_rows(fit), [], now)
    fence = keys.fence("text")
    await redis_client.hset(fence, VERSION_FIELD, 3)

    async def fence_of(arena: str, view: str, owed: PairCounts) -> ArenaFence:
        return ArenaFence(fence, 3)

    assert await writer.flush(fence_of, everything=True) == 1
    owed = await last_points(redis_client, keys, "overall", standings_rows(fit))
    assert [p["rank_change"] for p in owed.values()] == [False] * 4
    assert {m: p["mle_exists"] for m, p in owed.items()} == {
        "a": True, "b": True, "c": True, "new": False}
