"""The rank-change topic as a feed for stream clients: one consumer per subscription, started
at a Kafka position so that a client resuming from ``Last-Event-ID`` misses nothing."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from pydantic import ValidationError

from services.common.registry import ModelRegistry
from shared.events import RankChange
from shared.kafka import ensure_topics

log = logging.getLogger(__name__)

PARTITION = 0  # podium.rank-changes has one partition: one total order of changes


class FeedUnavailable(Exception):
    """Kafka could not be reached to open the feed."""


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


@dataclass(frozen=True)
class ChangeFilter:
    """Server-side filters of a stream; every one given must match."""

    board: str | None = None
    model: str | None = None
    organization: str | None = None
    top: int | None = None

    async def matches(self, change: RankChange, registry: ModelRegistry,
                      organizations: dict[str, str | None]) -> bool:
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


class Subscription:
    def __init__(self, consumer: AIOKafkaConsumer, tp: TopicPartition, start: int) -> None:
        self._consumer = consumer
        self._tp = tp
        self.start = start  # offset of the first record this subscription will read

    async def next_batch(self, timeout_s: float) -> list[tuple[int, RankChange]]:
        """Records that arrived, in offset order (empty after ``timeout_s`` without any)."""
        found = await self._consumer.getmany(self._tp, timeout_ms=int(timeout_s * 1000))
        out = []
        for record in found.get(self._tp, []):
            try:
                out.append((record.offset, RankChange.model_validate_json(record.value or b"")))
            except ValidationError:
                log.warning("skipping undecodable rank change at offset %d", record.offset)
        return out


class RankChangeFeed:
    def __init__(self, bootstrap: str, topic: str) -> None:
        self._bootstrap = bootstrap
        self._topic = topic
        self._topic_ready = False

    @asynccontextmanager
    async def subscribe(self, after: int | None) -> AsyncIterator[Subscription]:
        """Read from just after offset ``after``, or from now on when it is None."""
        consumer = AIOKafkaConsumer(bootstrap_servers=self._bootstrap, enable_auto_commit=False,
                                    auto_offset_reset="earliest", request_timeout_ms=10_000)
        tp = TopicPartition(self._topic, PARTITION)
        try:
            if not self._topic_ready:
                await ensure_topics(self._bootstrap, {self._topic: 1})
                self._topic_ready = True
            await consumer.start()
            consumer.assign([tp])
            first = (await consumer.beginning_offsets([tp]))[tp]
            end = (await consumer.end_offsets([tp]))[tp]
        except (KafkaError, OSError) as exc:
            await consumer.stop()
            raise FeedUnavailable(f"rank-change topic unreachable: {exc!r}") from exc
        try:
            start = end if after is None else min(max(after + 1, first), end)
            consumer.seek(tp, start)
            yield Subscription(consumer, tp, start)
        finally:
            await consumer.stop()


Emit = Callable[[int, RankChange], Awaitable[None]]


async def pump(
    subscription: Subscription,
    filters: ChangeFilter,
    registry: ModelRegistry,
    heartbeat_s: float,
    emit: Emit,
    heartbeat: Callable[[], Awaitable[None]],
) -> None:
    """Send matching changes as they arrive, and a heartbeat after ``heartbeat_s`` of quiet."""
    organizations: dict[str, str | None] = {}
    last_sent = time.monotonic()
    while True:
        wait = max(0.05, min(1.0, heartbeat_s - (time.monotonic() - last_sent)))
        for offset, change in await subscription.next_batch(wait):
            if await filters.matches(change, registry, organizations):
                await emit(offset, change)
                last_sent = time.monotonic()
        if time.monotonic() - last_sent >= heartbeat_s:
            await heartbeat()
            last_sent = time.monotonic()
