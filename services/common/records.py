"""Systems of record for the state Redis holds and Podium must not lose (docs/decisions.md,
"Systems of record"): the model registry, client keys and voter quarantine decisions live in
compacted Kafka topics (one partition each, so the offset orders every write); Redis holds
a copy.

- ``RecordWriter`` writes a record to its topic (acks=all, keyed by the record's identity, a
  tombstone for a deletion) and returns its offset; the caller then writes Redis with
  ``RecordStore.put``, which keeps the offset beside the value and writes only a newer record
  (``apply_record.lua``). An endpoint answers success after both.
- ``Replayer`` replays each topic (``Book``) into Redis when Redis lacks it: at start, and
  whenever its marker key (``KeyLayout.restored``) is gone (Redis wiped or replaced), checked
  every ``check_every_s``. A replay is idempotent and never overwrites a newer record.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from importlib.resources import files
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from prometheus_client import CollectorRegistry, Counter, Gauge

from services.common.redis_client import REDIS_RETRYABLE, RedisClient
from shared.kafka import ensure_topics

log = logging.getLogger(__name__)

APPLY_RECORD_SCRIPT = files("services.common").joinpath("apply_record.lua").read_text()
REDIS_DOWN = REDIS_RETRYABLE  # connection, timeout, a cluster failing over (redis_client.py)


class RecordUnavailable(Exception):
    """Kafka did not acknowledge a record: nothing was written to Redis; retry."""


@dataclass(frozen=True)
class Place:
    """Where one record lives in Redis: a field of a hash and the field of its offset (in the
    same hash or another one with the same hash tag)."""

    values: str
    field: str
    offsets: str
    offset_field: str


class RecordStore:
    """Writes records into Redis, each only if newer than what is there (``apply_record.lua``)."""

    def __init__(self, client: RedisClient) -> None:
        self._apply = client.register_script(APPLY_RECORD_SCRIPT)

    async def put(self, place: Place, offset: int, value: bytes | str | None) -> bool:
        """Set (or, for ``None``, delete) the value at ``place`` unless a record of this offset
        or a later one is there; True when written."""
        args: list[str | int | bytes] = [place.field, place.offset_field, offset,
                                          "0" if value is None else "1", value or b""]
        return bool(await self._apply(keys=[place.values, place.offsets], args=args))


class RecordWriter:
    """An idempotent producer (acks=all) of system-of-record topics, started on first use; a
    write waits for Kafka's ack and returns the record's offset."""

    def __init__(self, bootstrap: str, topics: Sequence[str], ack_timeout_s: float = 10.0,
                 client_id: str = "podium-records") -> None:
        self._bootstrap = bootstrap
        self._topics = list(topics)
        self._timeout_s = ack_timeout_s
        self._client_id = client_id
        self._producer: AIOKafkaProducer | None = None
        self._starting = asyncio.Lock()

    async def _started(self) -> AIOKafkaProducer:
        async with self._starting:
            if self._producer is None:
                await ensure_record_topics(self._bootstrap, self._topics)
                producer = AIOKafkaProducer(
                    bootstrap_servers=self._bootstrap, acks="all", enable_idempotence=True,
                    request_timeout_ms=int(self._timeout_s * 1000), client_id=self._client_id)
                try:
                    await producer.start()
                except BaseException:
                    await producer.stop()
                    raise
                self._producer = producer
            return self._producer

    async def write(self, topic: str, key: str, value: bytes | None) -> int:
        """Produce ``value`` (``None``: a tombstone) under ``key``; the offset Kafka gave it.
        Raises RecordUnavailable when Kafka does not acknowledge in time."""
        try:
            async with asyncio.timeout(self._timeout_s):
                producer = await self._started()
                ack = await producer.send(topic, value, key=key.encode())
                metadata = await ack
        except (TimeoutError, KafkaError, OSError) as exc:
            await self._reset()
            raise RecordUnavailable(f"Kafka did not acknowledge the {topic} record: {exc!r}"
                                    ) from exc
        return int(metadata.offset)

    async def _reset(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            await producer.stop()

    async def stop(self) -> None:
        await self._reset()


async def ensure_record_topics(bootstrap: str, topics: Sequence[str]) -> None:
    """The system-of-record topics, compacted, one partition each."""
    await ensure_topics(bootstrap, dict.fromkeys(topics, 1), compacted=topics)


Apply = Callable[[Sequence[Any]], Awaitable[None]]  # consumer records of one topic, in order


@dataclass
class Book:
    """One topic replayed into Redis: ``apply`` writes a batch of its consumer records (each
    idempotently), ``marker`` names the key whose absence means Redis lacks it, ``restored`` runs
    after each replay (e.g. the dev client key is registered again)."""

    topic: str
    apply: Apply
    marker: Callable[[], Awaitable[str]]
    restored: Callable[[], Awaitable[None]] | None = None
    compacted: bool = True  # a system-of-record topic (the scores topic is not)
    replays: int = field(default=0)


class RestoreMetrics:
    """Replays of the systems of record, by topic (``podium_{service}_...``)."""

    def __init__(self, registry: CollectorRegistry, service: str) -> None:
        self.replays = Counter(f"podium_{service}_record_replays", "Replays of a system-of-"
                               "record topic into Redis (at start, or Redis lost it).",
                               ["topic"], registry=registry)
        self.records = Counter(f"podium_{service}_records_replayed", "Records replayed into "
                               "Redis from system-of-record topics.", ["topic"],
                               registry=registry)
        self.restoring = Gauge(f"podium_{service}_restoring", "1 while a system-of-record "
                               "topic is being replayed into Redis.", registry=registry)
        self.in_progress = False  # what /readyz reads


class Replayer:
    """Replays each book's topic into Redis at start and whenever its marker is gone (checked
    every ``check_every_s``); ``restoring`` is True until the first replays are done and during
    any later one (``/readyz`` says so)."""

    def __init__(self, client: RedisClient, bootstrap: str, books: Sequence[Book],
                 check_every_s: float, metrics: RestoreMetrics | None = None) -> None:
        self._redis = client
        self._bootstrap = bootstrap
        self._books = list(books)
        self._check_every_s = check_every_s
        self._metrics = metrics
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._wake = asyncio.Event()
        self._set_restoring(True)  # until the first check is done

    @property
    def restoring(self) -> bool:
        return self._restoring

    def start(self) -> None:
        self._task = asyncio.create_task(self._watch(), name="records-replayer")

    async def stop(self, grace_s: float = 10.0) -> None:
        """Stop the watch: a replay under way finishes first (its Kafka clients closed), for at
        most ``grace_s``; then it is cancelled, again until done (a Kafka client may swallow a
        cancellation)."""
        self._stopping = True
        self._wake.set()
        task = self._task
        if task is None:
            return
        await asyncio.wait({task}, timeout=grace_s)
        while not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=1.0)

    async def _watch(self) -> None:
        first = True
        while not self._stopping:
            try:
                await self.restore_missing(first)
                first = False
            except (KafkaError, *REDIS_DOWN) as exc:
                log.warning("systems of record not checked (%r); retrying", exc)
            except Exception:  # a bug must not stop the watch for good
                log.exception("replaying a system of record failed; retrying")
            try:  # until the next check, or a stop
                await asyncio.wait_for(self._wake.wait(), self._check_every_s)
            except TimeoutError:
                pass

    async def restore_missing(self, at_start: bool = False) -> int:
        """Replay every book whose marker is gone; returns how many were replayed."""
        if at_start:  # the compacted ones: created here if no write has created them yet
            await ensure_record_topics(self._bootstrap,
                                       [b.topic for b in self._books if b.compacted])
        missing = [b for b in self._books if not await self._redis.exists(await b.marker())]
        if missing:
            self._set_restoring(True)
            for book in missing:
                if self._stopping:
                    return 0
                await self.replay(book, at_start)
        self._set_restoring(False)
        return len(missing)

    def _set_restoring(self, value: bool) -> None:
        self._restoring = value
        if self._metrics is not None:
            self._metrics.restoring.set(int(value))
            self._metrics.in_progress = value

    async def replay(self, book: Book, at_start: bool = False) -> int:
        """Read ``book.topic`` from its start to its end as of now into Redis, then set the
        marker (at the end offset); returns the records replayed."""
        started = time.monotonic()
        if not at_start:
            log.warning("Redis lost %s (its marker is gone): replaying the topic", book.topic)
        count, end = await replay_topic(self._bootstrap, book.topic, book.apply)
        if book.restored is not None:  # before the marker: what waits for it sees all of it
            await book.restored()
        await self._redis.set(await book.marker(), end)
        book.replays += 1
        if self._metrics is not None:
            self._metrics.replays.labels(book.topic).inc()
            self._metrics.records.labels(book.topic).inc(count)
        log.info("restored %s into Redis: %d records up to offset %d in %.2fs",
                 book.topic, count, end, time.monotonic() - started)
        return count


async def replay_topic(bootstrap: str, topic: str, apply: Apply, batch_max: int = 2000
                       ) -> tuple[int, int]:
    """Feed every record of ``topic`` (all partitions, from their start up to their end offsets
    as of now) to ``apply``, a batch per partition at a time; returns (records, sum of the end
    offsets)."""
    tps = await topic_partitions(bootstrap, topic)
    if not tps:
        return 0, 0
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                auto_offset_reset="earliest")
    await consumer.start()
    try:
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)
        count = 0
        while True:
            todo = [tp for tp in tps if await consumer.position(tp) < end[tp]]
            if not todo:
                break
            fetched = await consumer.getmany(*todo, timeout_ms=1000, max_records=batch_max)
            for tp, records in fetched.items():
                wanted = [r for r in records if r.offset < end[tp]]
                if wanted:
                    await apply(wanted)
                    count += len(wanted)
        return count, sum(end.values())
    finally:
        await consumer.stop()


async def topic_partitions(bootstrap: str, topic: str) -> list[TopicPartition]:
    """The topic's partitions (none when it does not exist)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        [described] = await admin.describe_topics([topic])
    finally:
        await admin.close()
    if described.get("error_code", 0):
        return []
    return [TopicPartition(topic, p["partition"]) for p in described.get("partitions", [])]


def record_key(record: Any) -> str:
    """A consumer record's key as text."""
    key = record.key
    return key.decode() if isinstance(key, bytes) else str(key)
