"""The rank-change topic as a feed for stream clients: one Kafka consumer per api process keeps
the most recent changes in memory (a ring) and every stream reads from it at its own cursor, so
that a new event costs one read from Kafka and one wake-up per stream, whatever their number.

A client resuming from ``Last-Event-ID`` inside the ring is served from memory; an older one
first from a short-lived consumer that reads the topic from that id up to the ring (bounded).
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.structs import ConsumerRecord
from pydantic import ValidationError

from services.common.registry import ModelRegistry
from shared.events import RankChange, SignificanceLevel
from shared.kafka import ensure_topics

log = logging.getLogger(__name__)

PARTITION = 0  # podium.rank-changes has one partition: one total order of changes
START_TIMEOUT_S = 10.0  # the feed's first read up to the topic's end, at the first stream
FEED_BATCH = 500  # records per read of the feed's consumer (at most a quarter of the ring)
CATCHUP_BATCH = 1_000  # records per read of a catch-up consumer
CATCHUP_CONCURRENCY = 4  # catch-up consumers at once per process (the others wait their turn)


class FeedUnavailable(Exception):
    """Kafka could not be reached to open the feed."""


class ResumeAhead(ValueError):
    """A ``Last-Event-ID`` past the end of the rank-change topic."""


def event_id(offset: int) -> str:
    return f"{PARTITION}:{offset}"


def parse_event_id(value: str) -> int:
    """The Kafka offset in an event id (``partition:offset``; a bare offset is accepted)."""
    partition, _, offset = value.strip().rpartition(":")
    if partition not in ("", str(PARTITION)) or not offset.lstrip("-").isdigit():
        raise ValueError(f"Last-Event-ID must look like '{PARTITION}:<offset>', got {value!r}")
    number = int(offset)
    if number < -1:
        raise ValueError(f"Last-Event-ID offset must be >= -1, got {number}")
    return number


@dataclass(frozen=True, slots=True)
class Change:
    """One rank change at its Kafka offset, encoded once for every stream."""

    offset: int
    change: RankChange
    json: str  # the RankChange as JSON
    sse: bytes  # the whole Server-Sent Event

    @classmethod
    def of(cls, offset: int, change: RankChange) -> Change:
        json = change.model_dump_json()
        sse = f"id: {event_id(offset)}\nevent: rank-change\ndata: {json}\n\n".encode()
        return cls(offset, change, json, sse)


def decode(record: ConsumerRecord[bytes, bytes]) -> Change | None:
    try:
        return Change.of(record.offset, RankChange.model_validate_json(record.value or b""))
    except ValidationError:
        log.warning("skipping undecodable rank change at offset %d", record.offset)
        return None


@dataclass(frozen=True)
class ChangeFilter:
    """Server-side filters of a stream; every one given must match."""

    board: str | None = None
    model: str | None = None
    organization: str | None = None
    top: int | None = None
    significance: SignificanceLevel = "any"

    def matches_all(self) -> bool:
        return self == ChangeFilter()

    async def matches(self, change: RankChange, registry: ModelRegistry,
                      organizations: dict[str, str | None]) -> bool:
        if not change.heard_at(self.significance):
            return False
        if self.board is not None and change.board != self.board:
            return False
        if self.model is not None and change.model != self.model:
            return False
        if self.top is not None and min(change.new_rank, change.old_rank or change.new_rank
                                        ) > self.top:
            return False
        if self.organization is not None:
            if change.model not in organizations:
                info = await registry.get(change.model)
                organizations[change.model] = info.organization if info else None
            org = organizations[change.model] or ""
            if org.casefold() != self.organization.casefold():
                return False
        return True


class ChangeRing:
    """The most recent changes, in offset order, numbered by a sequence that only grows.

    It *covers* the offsets from ``covered_from`` to ``position`` (exclusive): every change in
    that range is in the ring (offsets the topic does not hold, or could not decode, are not).
    """

    def __init__(self, capacity: int, position: int) -> None:
        self.capacity = capacity
        self._changes: list[Change | None] = [None] * capacity
        self._offsets: list[int] = []  # offsets of the ring's changes, oldest first
        self.first = 0  # sequence number of the oldest change held
        self.head = 0  # sequence number the next change gets
        self.covered_from = position
        self.position = position  # the next offset to read
        self.ended = False  # the process is stopping: streams end
        self._arrived = asyncio.Event()

    def append(self, changes: list[Change], position: int) -> None:
        """Add changes read up to ``position`` (exclusive) and wake every waiting stream."""
        for change in changes:
            if self.head - self.first == self.capacity:
                self.covered_from = self._offsets[0] + 1
                del self._offsets[0]
                self.first += 1
            self._changes[self.head % self.capacity] = change
            self._offsets.append(change.offset)
            self.head += 1
        self.position = max(self.position, position)
        arrived, self._arrived = self._arrived, asyncio.Event()
        arrived.set()

    def end(self) -> None:
        """Wake every stream to end."""
        self.ended = True
        self.append([], self.position)

    def covers(self, after: int) -> bool:
        """Whether every change after offset ``after`` (up to the position) is in the ring."""
        return after + 1 >= self.covered_from

    def cursor_after(self, after: int) -> int:
        """The sequence number of the first change after offset ``after`` (``covers`` it)."""
        return self.first + bisect.bisect_right(self._offsets, after)

    def since(self, cursor: int, limit: int) -> tuple[list[Change], int]:
        """At most ``limit`` changes from sequence ``cursor`` on (``cursor >= first``), and the
        sequence after them."""
        end = min(self.head, cursor + limit)
        return [c for c in (self._changes[s % self.capacity] for s in range(cursor, end))
                if c is not None], end

    async def wait_past(self, cursor: int, timeout_s: float) -> None:
        """Until a change with a sequence at or after ``cursor`` is held, or ``timeout_s``."""
        if cursor < self.head:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):  # a timer, not a task per wait
                await self._arrived.wait()


class RankChangeFeed:
    """One consumer of the rank-change topic for the whole process, started by the first
    stream (``ring()``) and stopped by ``close()``."""

    def __init__(self, bootstrap: str, topic: str, buffer_events: int) -> None:
        self._bootstrap = bootstrap
        self._topic = topic
        self._tp = TopicPartition(topic, PARTITION)
        self._buffer_events = buffer_events
        self._ring: ChangeRing | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._reader: asyncio.Task[None] | None = None
        self._starting = asyncio.Lock()
        self._catchups = asyncio.Semaphore(CATCHUP_CONCURRENCY)

    def _new_consumer(self) -> AIOKafkaConsumer:
        return AIOKafkaConsumer(bootstrap_servers=self._bootstrap, enable_auto_commit=False,
                                auto_offset_reset="earliest", request_timeout_ms=10_000)

    async def ring(self) -> ChangeRing:
        """The ring, read up to the topic's end as it was when the feed started."""
        async with self._starting:
            if self._ring is None:
                self._ring = await self._start()
            return self._ring

    async def _start(self) -> ChangeRing:
        consumer = self._new_consumer()
        try:
            async with asyncio.timeout(START_TIMEOUT_S):
                await ensure_topics(self._bootstrap, {self._topic: 1})
                await consumer.start()
                consumer.assign([self._tp])
                first = (await consumer.beginning_offsets([self._tp]))[self._tp]
                end = (await consumer.end_offsets([self._tp]))[self._tp]
                start = max(first, end - self._buffer_events)  # a full ring from the start
                consumer.seek(self._tp, start)
                ring = ChangeRing(self._buffer_events, start)
                while ring.position < end:
                    await self._read_into(consumer, ring)
        except (KafkaError, OSError, TimeoutError) as exc:
            await consumer.stop()
            raise FeedUnavailable(f"rank-change topic unreachable: {exc!r}") from exc
        self._consumer = consumer
        self._reader = asyncio.create_task(self._read_forever(consumer, ring))
        log.info("rank-change feed started at offset %d (topic end %d)", start, end)
        return ring

    async def _read_into(self, consumer: AIOKafkaConsumer, ring: ChangeRing) -> None:
        """One read, at most a quarter of the ring, then a turn for every stream it woke: a
        burst reaches each stream that keeps up before it can leave the ring."""
        found = await consumer.getmany(self._tp, timeout_ms=1000,
                                       max_records=max(1, min(FEED_BATCH, ring.capacity // 4)))
        changes = [c for c in map(decode, found.get(self._tp, [])) if c is not None]
        ring.append(changes, await consumer.position(self._tp))
        await asyncio.sleep(0)

    async def _read_forever(self, consumer: AIOKafkaConsumer, ring: ChangeRing) -> None:
        while True:
            try:
                await self._read_into(consumer, ring)
            except KafkaError as exc:  # aiokafka reconnects by itself; try again shortly
                log.warning("rank-change feed: %r; retrying", exc)
                await asyncio.sleep(1)

    async def end_offset(self) -> int:
        """The topic's end now (one request)."""
        consumer = self._consumer
        if consumer is None:
            raise FeedUnavailable("rank-change feed not started")
        try:
            end: int = (await consumer.end_offsets([self._tp]))[self._tp]
            return end
        except KafkaError as exc:
            raise FeedUnavailable(f"rank-change topic unreachable: {exc!r}") from exc

    async def check_resume_point(self, ring: ChangeRing, after: int) -> None:
        """Refuse (``ResumeAhead``) an offset past the topic's end; one the feed has not read
        yet but the topic holds (an id from a replica ahead of this one) is fine."""
        if after < ring.position:
            return
        end = await self.end_offset()
        if after >= end:
            raise ResumeAhead(f"Last-Event-ID {event_id(after)} is past the end of the "
                              f"rank-change stream (last event {event_id(end - 1)})")

    @contextlib.asynccontextmanager
    async def catch_up(self, after: int) -> AsyncIterator[CatchUp]:
        """A short-lived consumer of the topic from just after offset ``after``."""
        async with self._catchups, self._catch_up(after) as reader:
            yield reader

    @contextlib.asynccontextmanager
    async def _catch_up(self, after: int) -> AsyncIterator[CatchUp]:
        consumer = self._new_consumer()
        try:
            await consumer.start()
            consumer.assign([self._tp])
            consumer.seek(self._tp, after + 1)
        except (KafkaError, OSError) as exc:
            await consumer.stop()
            raise FeedUnavailable(f"rank-change topic unreachable: {exc!r}") from exc
        try:
            yield CatchUp(consumer, self._tp)
        finally:
            await consumer.stop()

    def end_streams(self) -> None:
        """End every stream (the process is stopping)."""
        if self._ring is not None:
            self._ring.end()

    async def close(self) -> None:
        """Stop the consumer (cancel and await its reader)."""
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        if self._consumer is not None:
            await self._consumer.stop()


class CatchUp:
    """Reads of a catch-up consumer."""

    def __init__(self, consumer: AIOKafkaConsumer, tp: TopicPartition) -> None:
        self._consumer = consumer
        self._tp = tp

    async def read(self) -> tuple[list[Change], int]:
        """The next changes and the position after them."""
        found = await self._consumer.getmany(self._tp, timeout_ms=1000,
                                             max_records=CATCHUP_BATCH)
        changes = [c for c in map(decode, found.get(self._tp, [])) if c is not None]
        return changes, await self._consumer.position(self._tp)
