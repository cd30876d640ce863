"""Ports and adapters of ingest: publishing votes to Kafka, remembering vote ids in Redis."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from typing import Any, Protocol

import redis.asyncio as aioredis
from aiokafka import AIOKafkaProducer
from aiokafka.errors import (
    InvalidProducerEpoch,
    InvalidProducerIdMapping,
    KafkaError,
    OutOfOrderSequenceNumber,
    UnknownProducerId,
)

from services.common.redis_client import RedisClient, RedisPipeline
from shared.events import ScoreEvent, Vote, encode_vote_record
from shared.kafka import ensure_topics
from shared.keys import KeyLayout, dedupe_shard
from shared.settings import IngestSettings

log = logging.getLogger(__name__)

# The idempotent producer's sequence state no longer matches the broker's (e.g. batches that
# expired while the broker was down left a gap): every later send fails the same way. aiokafka
# does not reset its producer id, so ingest replaces the producer.
BROKEN_PRODUCER_STATE = (
    OutOfOrderSequenceNumber,
    UnknownProducerId,
    InvalidProducerEpoch,
    InvalidProducerIdMapping,
)


class PublishUnavailable(Exception):
    """Kafka did not acknowledge in time; the client should retry with the same vote ids."""


class VotePublisher(Protocol):
    async def publish(self, votes: Sequence[Vote]) -> None: ...


class ScorePublisher(Protocol):
    async def publish_scores(self, scores: Sequence[ScoreEvent]) -> None: ...


class KafkaVotePublisher:
    """Idempotent producer (acks=all) of votes to the votes topic, keyed by arena.

    The producer is (re)started in the background, so ingest comes up even while Kafka is
    down and answers 503 until Kafka is reachable.
    """

    def __init__(
        self,
        settings: IngestSettings,
        on_delivered: Callable[[list[str]], Awaitable[None]],
    ) -> None:
        self._settings = settings
        self._on_delivered = on_delivered
        self._in_flight: dict[str, asyncio.Future[Any]] = {}
        self._delivered: list[str] = []  # delivered, not remembered yet (one writer at a time)
        self._orphans: set[asyncio.Future[Any]] = set()  # sends whose caller timed out
        self._background: set[asyncio.Task[None]] = set()
        self._topic = settings.topics.votes
        self._producer: AIOKafkaProducer | None = None
        self._connector: asyncio.Task[None] | None = None
        self._retired: set[asyncio.Task[None]] = set()
        self._ready = asyncio.Event()

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    async def start(self) -> None:
        self._connector = asyncio.create_task(self._connect_forever(), name="kafka-connect")

    async def _connect_forever(self) -> None:
        s = self._settings
        delay = 0.2
        while True:
            producer = AIOKafkaProducer(
                bootstrap_servers=s.kafka_bootstrap,
                acks="all",
                enable_idempotence=True,
                linger_ms=0,
                max_batch_size=256 * 1024,
                request_timeout_ms=int(s.ingest_kafka_ack_timeout_s * 1000),
                client_id="podium-ingest",
            )
            try:
                await ensure_topics(
                    s.kafka_bootstrap, {self._topic: s.votes_partitions, s.topics.scores: 1}
                )
                await producer.start()
            except (KafkaError, OSError) as exc:
                await producer.stop()
                log.warning("kafka not reachable at %s (%s); retrying", s.kafka_bootstrap, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            self._producer = producer
            self._ready.set()
            log.info("producing votes to %s at %s", self._topic, s.kafka_bootstrap)
            return

    async def stop(self) -> None:
        if self._connector is not None:
            self._connector.cancel()
            try:
                await self._connector
            except asyncio.CancelledError:
                pass
        if self._producer is not None:
            await self._producer.stop()  # flushes what is in flight
        if self._retired:
            await asyncio.gather(*self._retired, return_exceptions=True)
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)

    async def publish(self, votes: Sequence[Vote]) -> None:
        """Produce and wait for Kafka's acks. Votes go as batch records (a JSON array of up to
        ``ingest_votes_per_record`` votes of one arena). A send that times out stays in flight:
        a retry of the same vote_id waits on that send instead of producing the vote twice."""
        producer = self._producer
        if producer is None:
            raise PublishUnavailable("Kafka is not reachable yet")
        sends: list[tuple[asyncio.Future[Any], list[str]]] = []
        timeout = self._settings.ingest_kafka_ack_timeout_s
        try:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            async with asyncio.timeout(timeout):
                waits = await self._send_once(producer, votes, sends)
            # asyncio.wait, not gather of shields: it does not cancel the acks on a timeout
            # either (others may wait on them), and wakes this task one event loop turn sooner
            # (a shield and a gather each add a done callback's turn on every group's way)
            if waits:
                _, late = await asyncio.wait(waits, timeout=max(deadline - loop.time(), 0))
                if late:
                    raise TimeoutError
                for ack in waits:
                    ack.result()  # raises what the send raised
        except (TimeoutError, KafkaError) as exc:
            for ack, ids in sends:
                if not ack.done():  # nobody waits for these any more: remember them on delivery
                    self._orphans.add(ack)
                elif not ack.cancelled() and ack.exception() is None:
                    # delivered before another chunk of the same request failed: the request is
                    # answered 503 and retried, so these must be remembered here (and a retry
                    # that comes first waits on this delivered send instead of sending again)
                    for vote_id in ids:
                        self._in_flight[vote_id] = ack
                    self._remember_later(ids)
            if isinstance(exc, BROKEN_PRODUCER_STATE) and producer is self._producer:
                self._replace_producer(producer, exc)
            raise PublishUnavailable(f"Kafka did not acknowledge: {exc!r}") from exc

    async def publish_scores(self, scores: Sequence[ScoreEvent]) -> None:
        """Produce score events (keyed by benchmark) and wait for Kafka's acks."""
        producer = self._producer
        if producer is None:
            raise PublishUnavailable("Kafka is not reachable yet")
        topic = self._settings.topics.scores
        try:
            async with asyncio.timeout(self._settings.ingest_kafka_ack_timeout_s):
                acks = [
                    await producer.send(topic, e.model_dump_json().encode(),
                                        key=e.benchmark.encode())
                    for e in scores
                ]
                await asyncio.gather(*acks)
        except (TimeoutError, KafkaError) as exc:
            if isinstance(exc, BROKEN_PRODUCER_STATE) and producer is self._producer:
                self._replace_producer(producer, exc)
            raise PublishUnavailable(f"Kafka did not acknowledge: {exc!r}") from exc

    def _replace_producer(self, broken: AIOKafkaProducer, why: KafkaError) -> None:
        log.warning("producer state out of step with the broker (%r): starting a new producer",
                    why)
        self._producer = None
        self._ready.clear()
        retire = asyncio.ensure_future(broken.stop())
        self._retired.add(retire)
        retire.add_done_callback(self._retired.discard)
        self._connector = asyncio.create_task(self._connect_forever(), name="kafka-connect")

    async def _send_once(
        self, producer: AIOKafkaProducer, votes: Sequence[Vote],
        sends: list[tuple[asyncio.Future[Any], list[str]]],
    ) -> list[asyncio.Future[Any]]:
        waits: list[asyncio.Future[Any]] = []
        fresh: dict[str, list[Vote]] = {}
        for vote in votes:
            earlier = self._in_flight.get(vote.vote_id)
            if earlier is not None and not (earlier.done() and earlier.exception() is not None):
                waits.append(earlier)  # pending or delivered: never send twice
            else:
                fresh.setdefault(vote.arena, []).append(vote)
        size = self._settings.ingest_votes_per_record
        for arena, arena_votes in fresh.items():
            for start in range(0, len(arena_votes), size):
                chunk = arena_votes[start:start + size]
                ack: asyncio.Future[Any] = await producer.send(
                    self._topic, encode_vote_record(chunk), key=arena.encode()
                )
                ids = [v.vote_id for v in chunk]
                for vote_id in ids:
                    self._in_flight[vote_id] = ack
                ack.add_done_callback(functools.partial(self._settled, ids))
                sends.append((ack, ids))
                waits.append(ack)
        return waits

    def _settled(self, vote_ids: list[str], ack: asyncio.Future[Any]) -> None:
        """Forget a send once it failed or was acknowledged to a caller still waiting (who
        remembers its vote ids while holding them); a send whose caller gave up (timeout) is
        forgotten only once its delivery is remembered here."""
        orphan = ack in self._orphans
        self._orphans.discard(ack)
        if ack.cancelled() or ack.exception() is not None or not orphan:
            for vote_id in vote_ids:
                self._in_flight.pop(vote_id, None)
            return
        self._remember_later(vote_ids)

    def _remember_later(self, vote_ids: list[str]) -> None:
        """Remember delivered ids nobody else will (they stay in flight until written)."""
        self._delivered.extend(vote_ids)
        if not self._background:  # one writer drains the deliveries in batches
            task = asyncio.ensure_future(self._remember_delivered())
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def _remember_delivered(self) -> None:
        while self._delivered:
            vote_ids, self._delivered = self._delivered, []
            try:
                await self._on_delivered(vote_ids)
            finally:
                for vote_id in vote_ids:
                    self._in_flight.pop(vote_id, None)


class VotesInProgress:
    """The vote_ids this process is accepting right now. A request holds its ids from the dedupe
    lookup until they are remembered, so a concurrent request with one of them waits and then
    finds it remembered (a duplicate), instead of producing it a second time."""

    def __init__(self) -> None:
        self._held: dict[str, asyncio.Event] = {}

    @contextlib.asynccontextmanager
    async def hold(self, vote_ids: Iterable[str]) -> AsyncIterator[None]:
        release = await self.acquire(vote_ids)
        try:
            yield
        finally:
            release()

    async def acquire(self, vote_ids: Iterable[str]) -> Callable[[], None]:
        """Hold ``vote_ids`` (waiting for whoever holds any of them); returns the release."""
        wanted = set(vote_ids)
        while busy := {self._held[v] for v in wanted if v in self._held}:
            await asyncio.gather(*(event.wait() for event in busy))
        released = asyncio.Event()
        for v in wanted:
            self._held[v] = released

        def release() -> None:
            for v in wanted:
                del self._held[v]
            released.set()

        return release


class VoteIdMemory:
    """Remembers accepted vote ids for the dedupe window, so a client retry is not a new vote.

    Ids are members of sets, one per shard (``DEDUPE_SHARDS`` hash tags) and per window-long
    bucket of time (``bucket = unix time // window``). A bucket's sets expire two windows after
    the bucket began, so an id is remembered for at least one window and at most two. A lookup
    checks the current bucket, the one before, and, in the last minute of a bucket, the next
    one (another ingest instance's clock may be a little ahead). One SADD per shard a group
    touches (in one script call), instead of a key with a TTL per vote: a new key cost Redis
    ~5 us, a set member ~1 (docs/decisions.md)."""

    def __init__(
        self, client: RedisClient, keys: KeyLayout, window_s: int,
        clock: Callable[[], float] = time.time,
        write_retry_s: float = 15.0,
        unremembered_max: int = 1_000_000,
    ) -> None:
        self._redis = client
        self._keys = keys
        self._window_s = window_s
        self._clock = clock
        self._remember = client.register_script(REMEMBER_SCRIPT)
        self._write_retry_s = write_retry_s
        # ids whose markers Redis has not taken yet (insertion order: oldest first), and the
        # task that keeps writing them
        self._unremembered: dict[str, None] = {}
        self._unremembered_max = unremembered_max
        self._writer: asyncio.Task[None] | None = None

    @property
    def enabled(self) -> bool:
        return self._window_s > 0

    def _buckets(self) -> list[int]:
        """The buckets a lookup looks in now: current, previous and, near its end, next."""
        now, window = self._clock(), self._window_s
        bucket = int(now // window)
        if now >= (bucket + 1) * window - DEDUPE_CLOCK_SKEW_S:
            return [bucket, bucket - 1, bucket + 1]
        return [bucket, bucket - 1]

    def lookup_plan(self, vote_ids: Sequence[str]) -> tuple[list[str], list[int], int]:
        """For a lookup inside another script call: the sets to look in (``per_shard`` for
        each shard the ids fall in: see ``_buckets``), per id its shard's slot (1-based: its
        sets are keys ``per_shard * (slot - 1) + 1 ..`` of the list), and ``per_shard``."""
        buckets = self._buckets()
        slot_of: dict[int, int] = {}
        slots = [slot_of.setdefault(dedupe_shard(v), len(slot_of) + 1) for v in vote_ids]
        sets = self._keys.dedupe_ids
        keys = [sets(shard, b) for shard in slot_of for b in buckets]
        return keys, slots, len(buckets)

    async def seen(self, vote_ids: Sequence[str]) -> set[str]:
        """The ids remembered within the window: one round trip."""
        if not self._window_s or not vote_ids:
            return set()
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                found = self.queue_lookup(pipe, vote_ids)
                return found(iter(await pipe.execute()))
        except aioredis.RedisError as exc:  # fail open: Kafka stays the system of record
            log.warning("dedupe lookup failed, accepting without it: %s", exc)
            return set()

    def queue_lookup(
        self, pipe: RedisPipeline, vote_ids: Sequence[str]
    ) -> Callable[[Iterator[Any]], set[str]]:
        """Add the lookup of ``vote_ids`` to a pipeline shared with other commands; returns what
        reads the seen ids from its replies (consuming them): one SMISMEMBER per shard and
        bucket looked in."""
        if not self._window_s or not vote_ids:
            return lambda replies: set()
        buckets = self._buckets()
        by_shard = _by_shard(vote_ids)
        sets = self._keys.dedupe_ids
        for shard, ids in by_shard.items():
            for b in buckets:
                pipe.smismember(sets(shard, b), ids)

        def found(replies: Iterator[Any]) -> set[str]:
            hits = self.unremembered(vote_ids)
            for ids in by_shard.values():
                for _ in buckets:
                    hits.update(v for v, hit in zip(ids, next(replies), strict=True) if hit)
            return hits

        return found

    def unremembered(self, vote_ids: Iterable[str]) -> set[str]:
        """The ids among ``vote_ids`` accepted by this process whose markers Redis has not
        taken yet (Redis was down past the retries): remembered here meanwhile."""
        if not self._unremembered:
            return set()
        return {v for v in vote_ids if v in self._unremembered}

    @property
    def unremembered_count(self) -> int:
        return len(self._unremembered)

    async def remember(self, vote_ids: Iterable[str]) -> None:
        """Write the ids' markers, retried on failure (fresh connections, backoff) for up to
        ``write_retry_s``: long enough to ride out a Redis restart. Ids still unwritten then
        are kept in process (``unremembered``) and written by a background task. Never raises:
        the votes are in Kafka already."""
        if not self._window_s:
            return
        ids = list(vote_ids)
        if not ids:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._write_retry_s
        delay = REMEMBER_RETRY_FIRST_S
        while True:
            try:
                await self._write(ids)
                return
            except aioredis.RedisError as exc:
                if loop.time() + delay > deadline:
                    log.warning("could not remember %d vote ids for %.1f s (%s): kept in "
                                "process until Redis takes them", len(ids),
                                self._write_retry_s, exc)
                    self._keep_unremembered(ids)
                    return
            await asyncio.sleep(delay)  # a backoff between attempts, not a wait for a state
            delay = min(delay * 2, REMEMBER_RETRY_MAX_S)

    def _keep_unremembered(self, ids: list[str]) -> None:
        kept = self._unremembered
        kept.update(dict.fromkeys(ids))
        if len(kept) > self._unremembered_max:
            dropped = len(kept) - self._unremembered_max
            for vote_id in list(itertools.islice(kept, dropped)):
                del kept[vote_id]
            log.error("%d unremembered vote ids dropped (more than %d kept): a retry of them "
                      "would be counted again", dropped, self._unremembered_max)
        if self._writer is None or self._writer.done():
            self._writer = asyncio.ensure_future(self._write_unremembered())

    async def _write_unremembered(self) -> None:
        """Until every kept id is written: write them (in chunks), backing off while Redis
        refuses."""
        delay = REMEMBER_RETRY_FIRST_S
        while self._unremembered:
            chunk = list(itertools.islice(self._unremembered, UNREMEMBERED_CHUNK))
            try:
                await self._write(chunk)
            except aioredis.RedisError as exc:
                log.debug("unremembered vote ids not written yet: %s", exc)
                await asyncio.sleep(delay)  # backoff while Redis is down
                delay = min(delay * 2, REMEMBER_RETRY_MAX_S)
                continue
            for vote_id in chunk:
                self._unremembered.pop(vote_id, None)
            delay = REMEMBER_RETRY_FIRST_S
        log.info("unremembered vote ids written to Redis")

    async def close(self, timeout_s: float = 5.0) -> None:
        """At shutdown: give the kept ids ``timeout_s`` more to reach Redis; log what is lost."""
        writer = self._writer
        if writer is None:
            return
        try:
            async with asyncio.timeout(timeout_s):
                await asyncio.shield(writer)
        except TimeoutError:
            writer.cancel()
            log.error("shutdown: %d accepted vote ids never reached Redis's dedupe markers: a "
                      "retry of them would be counted again", len(self._unremembered))
        with contextlib.suppress(asyncio.CancelledError):
            await writer

    async def _write(self, vote_ids: Iterable[str]) -> None:
        """Add ids to the current bucket's sets: one script call (per shard an SADD and an
        EXPIRE; a pipeline of those cost a group of single votes more of ingest's CPU)."""
        by_shard = _by_shard(vote_ids)
        if not by_shard:
            return
        window = self._window_s
        now = self._clock()
        bucket = int(now // window)
        # relative: Redis expires by its own clock
        ttl = math.ceil((bucket + 2) * window + DEDUPE_EXPIRY_MARGIN_S - now)
        sets = self._keys.dedupe_ids
        keys = [sets(shard, bucket) for shard in by_shard]
        args: list[str | int] = [ttl, *(len(ids) for ids in by_shard.values())]
        for ids in by_shard.values():
            args += ids
        await self._remember(keys=keys, args=args)


REMEMBER_SCRIPT = """
-- KEYS: one dedupe set per shard; ARGV: ttl_s, the number of ids of each set, then the ids
local at = 2 + #KEYS
for i, key in ipairs(KEYS) do
  local last = at + tonumber(ARGV[1 + i]) - 1
  for from = at, last, 1000 do  -- unpack has a limit
    redis.call('SADD', key, unpack(ARGV, from, math.min(from + 999, last)))
  end
  redis.call('EXPIRE', key, ARGV[1])
  at = last + 1
end
return at - 2 - #KEYS
"""


# how far apart the clocks of ingest instances may be: sets are kept this much past two
# windows, and the next bucket is looked in this long before it begins
DEDUPE_CLOCK_SKEW_S = 60
DEDUPE_EXPIRY_MARGIN_S = DEDUPE_CLOCK_SKEW_S
# backoff between attempts to write dedupe markers (Redis down): 50 ms doubling to 1 s
REMEMBER_RETRY_FIRST_S = 0.05
REMEMBER_RETRY_MAX_S = 1.0
UNREMEMBERED_CHUNK = 10_000


def _by_shard(vote_ids: Iterable[str]) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    for v in vote_ids:
        shard = dedupe_shard(v)
        ids = out.get(shard)
        if ids is None:
            out[shard] = [v]
        else:
            ids.append(v)
    return out
