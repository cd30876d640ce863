"""A request whose votes go out in several Kafka records (one per arena) and only partly arrive
before the ack timeout is answered 503 and retried: what did arrive must not be sent again."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from services.ingest.kafka_publisher import KafkaVotePublisher
from services.ingest.publisher import PublishUnavailable
from shared.events import Vote
from shared.settings import IngestSettings


class Producer:
    """Stands in for AIOKafkaProducer.send: records of arenas in ``hanging`` never get an ack."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.hanging: set[bytes] = {b"vision"}
        self.pending: list[asyncio.Future[Any]] = []

    async def send(self, topic: str, value: bytes, key: bytes) -> asyncio.Future[Any]:
        ack: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.sent.append(key)
        if key in self.hanging:
            self.pending.append(ack)
        else:
            ack.set_result(None)
        return ack

    def recover(self) -> None:
        """The broker is back: what was pending is acknowledged."""
        self.hanging.clear()
        for ack in self.pending:
            ack.set_result(None)


def votes() -> list[Vote]:
    return [Vote(vote_id=f"{arena}-{i}", arena=arena, model_a="a", model_b="b",
                 winner="model_a") for arena in ("text", "vision") for i in range(3)]


async def test_a_chunk_delivered_before_a_timeout_is_remembered_not_sent_again() -> None:
    remembered: list[str] = []
    writable = asyncio.Event()

    async def remember(ids: list[str]) -> None:  # the dedupe markers' write (slow on purpose)
        await writable.wait()
        remembered.extend(ids)

    publisher = KafkaVotePublisher(IngestSettings(ingest_kafka_ack_timeout_s=0.2), remember)
    producer = Producer()
    publisher._producer = producer  # type: ignore[assignment]
    with pytest.raises(PublishUnavailable):
        await publisher.publish(votes())
    producer.recover()
    # the client's retry of the whole request, before the markers are written
    await publisher.publish(votes())
    assert producer.sent.count(b"text") == 1, "the delivered chunk is not sent twice"
    assert producer.sent.count(b"vision") == 1, "the pending chunk is waited on, not resent"
    writable.set()
    for _ in range(5):
        await asyncio.sleep(0)
    assert {"text-0", "text-1", "text-2"} <= set(remembered), remembered
