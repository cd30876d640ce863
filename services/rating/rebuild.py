"""``python -m services.rating.rebuild``: replay the votes topic (and the scores topic, for the
benchmark boards) from offset 0 into a fresh generation of the Redis key space, check it against
the live one, then switch reads to it.

1. Allocate generation n (``podium.g{n}``) and name it ``next`` in the generations pointer: from
   then on the live worker copies each batch it applies into it as well, but only where that
   generation already holds everything before the batch (``required_fence``), so it never gets
   a gap.
2. Replay every partition from offset 0 to the end offsets taken at the start through the same
   ``RatingProcessor`` the worker uses (fenced apply, Elo, refits) into that generation.
3. Keep consuming until, for every arena and partition, the new generation's fence is at or past
   the live one's; verify (atomically per arena) that every board's counts (a benchmark's
   scores) are equal where the fences are equal; then switch ``active`` to it. The worker
   writes to the new generation from its next batch on and refits every board there (and
   replays the scores topic into it, fenced: services/rating/worker.py). See
   docs/decisions.md.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # as the worker (services/rating/__main__.py)

import argparse
import asyncio
import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.resources import files

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from services.common.redis_client import RedisClient
from services.common.redis_client import connect as redis_connect
from services.common.runtime import configure_logging
from services.rating.arena_slices import RawRecord
from services.rating.engine import FitOptions
from services.rating.packed_counts import decode_board, names_by_number
from services.rating.processor import Outputs, RatingProcessor, Tuning
from services.rating.scores import ScoreProcessor
from services.rating.store import VERSION_FIELD, RatingStore
from shared.events import BENCH_ARENA
from shared.generations import read_generations
from shared.keys import ACTIVE, ALL_BOARDS, NEXT, KeyLayout, text
from shared.settings import RatingSettings

log = logging.getLogger("podium.rebuild")

SWITCH_SCRIPT = files("services.rating").joinpath("switch_generation.lua").read_text()
LAST_GENERATION = "last"


class RebuildFailed(Exception):
    """The rebuilt generation differs from the live one, or could not catch up: not switched."""


@dataclass(frozen=True)
class RebuildResult:
    previous: str
    active: str
    records: int
    boards_compared: int


@dataclass(frozen=True)
class ArenaCheck:
    in_step: bool  # the new generation holds at least what the live one holds
    compared: int  # boards whose counts were compared (fences equal)


async def rebuild(settings: RatingSettings, progress_every_s: float = 2.0) -> RebuildResult:
    client = redis_connect(settings.redis_url)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )
    try:
        await consumer.start()
        return await _rebuild(settings, client, consumer, progress_every_s)
    finally:
        await consumer.stop()
        await client.aclose()


async def _drop(values: Sequence[bytes]) -> None:
    """Dead letters and rank changes were published by the live worker already."""


async def _rebuild(
    settings: RatingSettings,
    client: RedisClient,
    consumer: AIOKafkaConsumer,
    progress_every_s: float,
) -> RebuildResult:
    base = settings.keys
    number = await client.hincrby(base.generations(), LAST_GENERATION, 1)
    target = base.generation(int(number))
    previous = (await read_generations(client, base)).active
    await _clear(client, target)
    await client.hset(base.generations(), NEXT, target.prefix)
    log.info("rebuild: replaying %s into key space %s (live: %s)",
             settings.topics.votes, target.prefix, previous.prefix)

    tps = await _partitions(settings.kafka_bootstrap, settings.topics.votes)
    # the scores topic too: the bench boards are state of the generation like any board
    tps += await _partitions(settings.kafka_bootstrap, settings.topics.scores, required=False)
    consumer.assign(tps)
    await consumer.seek_to_beginning(*tps)
    end = await consumer.end_offsets(tps)
    total = sum(end.values())

    processor = RatingProcessor(
        RatingStore(client, target, settings.sampling_window_s),
        Outputs(_drop, _drop),
        Tuning(fit=FitOptions(preliminary_votes=settings.rating_preliminary_votes,
                              tol=settings.rating_fit_tol)),
    )
    scores = ScoreProcessor(client, target, _drop)
    replay = _Replay(consumer, processor, (scores, settings.topics.scores),
                     settings.rating_batch_max, progress_every_s, total)
    while any([await consumer.position(tp) < end[tp] for tp in tps]):
        await replay.step()
    log.info("rebuild: replayed %d records up to the end offsets taken at the start",
             replay.records)

    deadline = time.monotonic() + settings.rating_rebuild_sync_timeout_s
    while True:
        live = (await read_generations(client, base)).active
        checks = [await _check_arena(client, live, target, arena)
                  for arena in await _arenas(client, live)]
        if all(c.in_step for c in checks):
            break
        if time.monotonic() > deadline:
            raise RebuildFailed(f"{target.prefix} did not catch up with {live.prefix} in "
                                f"{settings.rating_rebuild_sync_timeout_s}s; not switched")
        await replay.step(timeout_ms=200)

    switched = await client.eval(SWITCH_SCRIPT, 1, base.generations(), ACTIVE, NEXT, target.prefix)
    if not switched:
        raise RebuildFailed(f"another rebuild replaced {target.prefix} as next; not switched")
    await client.publish(base.board_changes(), ALL_BOARDS)  # the api's cached boards are stale
    compared = sum(c.compared for c in checks)
    log.info("rebuild: switched reads and writes from %s to %s (%d records replayed, %d boards "
             "compared equal)", live.prefix, target.prefix, replay.records, compared)
    return RebuildResult(live.prefix, target.prefix, replay.records, compared)


class _Replay:
    def __init__(self, consumer: AIOKafkaConsumer, processor: RatingProcessor,
                 scores: tuple[ScoreProcessor, str], batch_max: int, progress_every_s: float,
                 total: int) -> None:
        self._consumer = consumer
        self._processor = processor
        self._scores, self._scores_topic = scores
        self._batch_max = batch_max
        self._every = progress_every_s
        self._total = total
        self._last_log = time.monotonic()
        self.records = 0

    async def step(self, timeout_ms: int = 1000) -> None:
        fetched = await self._consumer.getmany(timeout_ms=timeout_ms, max_records=self._batch_max)
        records = [RawRecord(r.topic, r.partition, r.offset, r.value)
                   for batch in fetched.values() for r in batch]
        if not records:
            return
        votes = [r for r in records if r.topic != self._scores_topic]
        if votes:
            await self._processor.process(votes)
        if len(votes) < len(records):
            await self._scores.process([r for r in records if r.topic == self._scores_topic])
        self.records += len(records)
        if time.monotonic() - self._last_log >= self._every:
            self._last_log = time.monotonic()
            share = f" ({100 * self.records / self._total:.0f}%)" if self._total else ""
            log.info("rebuild: %d of %d records replayed%s", self.records, self._total, share)


async def _partitions(bootstrap: str, topic: str, required: bool = True
                      ) -> list[TopicPartition]:
    """The topic's partitions; none for a missing topic that is not ``required``."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        [described] = await admin.describe_topics([topic])
    finally:
        await admin.close()
    if described.get("error_code", 0) or not described.get("partitions"):
        if not required:
            return []
        raise RebuildFailed(f"topic {topic} not found")
    return [TopicPartition(topic, p["partition"]) for p in described["partitions"]]


async def _clear(client: RedisClient, layout: KeyLayout) -> None:
    """A fresh generation number has no keys, unless a crashed rebuild left some: drop them."""
    async for key in client.scan_iter(match=f"{layout.prefix}:*", count=1000):
        await client.delete(key)


async def _arenas(client: RedisClient, layout: KeyLayout) -> list[str]:
    return sorted(text(a) for a in await client.smembers(layout.arenas()))


async def _check_arena(
    client: RedisClient, live: KeyLayout, new: KeyLayout, arena: str
) -> ArenaCheck:
    """Fences and counts of both generations of one arena, read atomically (same slot). The
    generations number their models independently (in the order each saw them), so counts are
    compared decoded, as canonical triples."""
    views = sorted(text(v) for v in await client.smembers(live.views(arena)))
    async with client.pipeline(transaction=True) as pipe:
        pipe.hgetall(live.fence(arena))
        pipe.hgetall(new.fence(arena))
        pipe.hgetall(live.model_index(arena))
        pipe.hgetall(new.model_index(arena))
        for view in views:
            pipe.get(live.counts(arena, view))
            pipe.get(new.counts(arena, view))
        live_raw, new_raw, live_index, new_index, *counts = await pipe.execute()
    # the fences of the partitions (the version counter differs between generations by design)
    live_fence = {f: o for f, o in live_raw.items() if text(f) != VERSION_FIELD}
    new_fence = {f: o for f, o in new_raw.items() if text(f) != VERSION_FIELD}
    behind = [f for f, offset in live_fence.items() if int(new_fence.get(f, -1)) < int(offset)]
    if behind:
        return ArenaCheck(in_step=False, compared=0)
    if {f: int(o) for f, o in live_fence.items()} != {f: int(o) for f, o in new_fence.items()}:
        log.info("rebuild: %s is ahead of the live state (worker behind); not compared", arena)
        return ArenaCheck(in_step=True, compared=0)
    if arena == BENCH_ARENA:  # benchmark boards: latest score per model, no counts
        for view in views:
            if (await client.hgetall(live.scores(arena, view))
                    != await client.hgetall(new.scores(arena, view))):
                raise RebuildFailed(f"scores of {arena}/{view} differ between {live.prefix} "
                                    f"and {new.prefix}; not switched")
        return ArenaCheck(in_step=True, compared=len(views))
    live_names, new_names = names_by_number(live_index), names_by_number(new_index)
    for view, live_counts, new_counts in zip(views, counts[::2], counts[1::2], strict=True):
        if decode_board(live_names, live_counts) != decode_board(new_names, new_counts):
            raise RebuildFailed(f"counts of {arena}/{view} differ between {live.prefix} and "
                                f"{new.prefix}; not switched")
    return ArenaCheck(in_step=True, compared=len(views))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--progress-every", type=float, default=2.0, metavar="SECONDS")
    args = parser.parse_args(argv)
    settings = RatingSettings()
    configure_logging(settings.log_level, "rebuild")
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    try:
        result = asyncio.run(rebuild(settings, args.progress_every))
    except RebuildFailed as exc:
        log.error("rebuild failed: %s", exc)
        return 1
    print(f"rebuild: {result.active} is live (was {result.previous}); "
          f"{result.records} records replayed, {result.boards_compared} boards compared equal")
    return 0


if __name__ == "__main__":
    sys.exit(main())
