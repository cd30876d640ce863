"""faust's Kafka consumer with a short fetch long-poll.

faust builds its aiokafka consumer with ``fetch_max_wait_ms=1500`` (hard-coded). With one
broker, aiokafka keeps one fetch in flight per node, and while a partition still has records
buffered it fetches only the *other* partitions of that node: the votes topic's idle
partitions, the scores topic, faust's leader topic. That fetch finds nothing and is held by the
broker for the whole long-poll, so once the worker has drained the busy partition's buffer it
waited up to 1.5 s for its next records (seen in the end-to-end benchmark as gaps of ~1 s
between batches, half of the time it took the worker to catch up). A short long-poll bounds
that wait; an idle worker then sends a few more (empty) fetches a second.
"""

from __future__ import annotations

from typing import Any

import aiokafka
import faust
from faust.transport.drivers import aiokafka as faust_aiokafka

FETCH_MAX_WAIT_MS = 100


def shorten_long_poll(consumer: aiokafka.AIOKafkaConsumer, fetch_max_wait_ms: int) -> None:
    """Set a not yet started consumer's fetch long-poll (aiokafka reads it when it starts)."""
    if not hasattr(consumer, "_fetch_max_wait_ms"):  # an aiokafka that no longer has it
        raise RuntimeError("aiokafka.AIOKafkaConsumer has no _fetch_max_wait_ms to set")
    consumer._fetch_max_wait_ms = fetch_max_wait_ms


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> aiokafka.AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        shorten_long_poll(consumer, FETCH_MAX_WAIT_MS)
        return consumer


class _Consumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class _Transport(faust_aiokafka.Transport):
    Consumer = _Consumer


class App(faust.App):
    """``faust.App`` whose consumer long-polls for at most ``FETCH_MAX_WAIT_MS``."""

    def _new_transport(self) -> Any:
        return _Transport(self.conf.broker_consumer, self)
