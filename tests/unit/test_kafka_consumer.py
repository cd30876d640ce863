"""The rating worker's faust app long-polls Kafka briefly (services/rating/kafka_consumer.py)."""

from __future__ import annotations

import pytest
from aiokafka import AIOKafkaConsumer

from services.rating import kafka_consumer
from services.rating.worker import build_worker
from shared.settings import RatingSettings


async def test_shorten_long_poll_sets_what_aiokafka_reads_at_start() -> None:
    consumer = AIOKafkaConsumer(bootstrap_servers="127.0.0.1:1")  # never started
    try:
        assert consumer._fetch_max_wait_ms != 100
        kafka_consumer.shorten_long_poll(consumer, 100)
        assert consumer._fetch_max_wait_ms == 100
    finally:
        await consumer.stop()


async def test_shorten_long_poll_refuses_a_consumer_without_the_setting() -> None:
    with pytest.raises(RuntimeError, match="_fetch_max_wait_ms"):
        kafka_consumer.shorten_long_poll(object(), 100)


def test_the_worker_app_builds_its_consumer_with_the_short_long_poll() -> None:
    settings = RatingSettings(redis_url="redis://unused", kafka_bootstrap="127.0.0.1:1")
    app = build_worker(settings)
    assert isinstance(app, kafka_consumer.App)
    assert isinstance(app.transport, kafka_consumer._Transport)
    assert app.transport.Consumer is kafka_consumer._Consumer
    # the consumer thread the worker's consumer creates is the one that shortens the long-poll
    assert kafka_consumer._Consumer._new_consumer_thread.__qualname__.startswith("_Consumer.")
    assert kafka_consumer.FETCH_MAX_WAIT_MS <= 200
