"""faust's Kafka consumer with a short fetch long-poll.

faust builds its aiokafka consumer with ``fetch_max_wait_ms=1500`` (hard-coded). With one
broker, aiokafka keeps one fetch in flight per node, and while a partition still has records
buffered it fetches only the *other* partitions of that node: the votes topic's idle
partitions, the scores topic, faust's leader topic. That fetch finds nothing and is held by the
broker for the whole long-poll, so once the worker has drained the busy partition's buffer it
waited up to 1.5 s for its next records (seen in the end-to-end benchmark as gaps of ~1 s
between batches, half of the time it took the worker to catch up). A short long-poll bounds
that wait; an idle worker then sends a few more (empty) fetches a second.

It also positions the votes partitions where Redis says the worker's output ends, rather than
at Kafka's committed offsets (``services/rating/resume.py``): faust seeks every assigned
partition to its committed offset in ``Consumer.perform_seek`` (after each rebalance, and when
its fetcher returns while the flow is stopped); ``_Consumer.perform_seek`` then asks the app's
``Positioner`` where each votes partition resumes and seeks it there. ``reposition`` does the
same while running (Redis lost applied state): it stops the flow as a rebalance does, waits
until the fetcher is parked (no record half-delivered that would move faust's read offset past
the seek), seeks, and resumes the flow (faust clears the streams' buffers on resume).

These use faust-streaming's consumer internals (``perform_seek``, ``_wait_next_records``,
``_committed_offset``, ``stop_flow``/``resume_flow``, ``seek_wait``), checked against the
versions below at import and by tests/unit/test_kafka_consumer_internals.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import Mapping
from importlib.metadata import version
from typing import Any, Protocol

import aiokafka
import faust
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP

from services.rating.stop_grace import StopGrace

log = logging.getLogger(__name__)

FETCH_MAX_WAIT_MS = 100
PARK_TIMEOUT_S = 10.0
PARK_POLL_S = 0.1  # how often the wait for the fetcher to park looks for a stop
# the faust-streaming versions whose consumer internals the overrides below were read against
FAUST_VERSIONS = ("0.15.",)


def check_faust_version(found: str | None = None) -> None:
    """Refuse a faust-streaming whose internals were not checked (see the module docstring)."""
    found = found or version("faust-streaming")
    if not found.startswith(FAUST_VERSIONS):
        raise RuntimeError(f"faust-streaming {found}: services/rating/kafka_consumer.py was "
                           f"written against {', '.join(FAUST_VERSIONS)}x; check its overrides")


check_faust_version()


class Positioner(Protocol):
    """Where the app's votes partitions resume (``services.rating.worker.Resumer``)."""

    async def positions(
        self, assigned: set[TP], committed: Mapping[TP, int | None], earliest: Mapping[TP, int]
    ) -> Mapping[TP, int]:
        """The offset each partition (of those it handles) resumes at."""
        ...


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
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._parked = asyncio.Event()

    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def _wait_next_records(self, timeout: float) -> Any:  # noqa: ASYNC109 (faust's)
        # entered with the flow stopped, the fetcher delivers nothing until it resumes
        if not self.flow_active:
            self._parked.set()
        try:
            return await super()._wait_next_records(timeout)
        finally:
            self._parked.clear()

    async def wait_empty_within(self, grace: StopGrace) -> bool:
        """faust's ``wait_empty`` (until every event delivered is acked, committing meanwhile),
        for the stop's grace at most (faust's waits for ever: a batch Redis keeps from ending
        is never acked); then commit what was acked. True if everything was."""
        while self._unacked_messages and grace.start() > 0:
            gc.collect()  # a weak set: messages dropped unprocessed (buffers cleared) leave it
            await self.commit()
            if not self._unacked_messages:
                break
            await self._wait_for_ack(timeout=min(1.0, grace.start()))  # woken by an ack
            self._clean_unacked_messages()
        await self.commit_and_end_transactions()
        return not self._unacked_messages

    def _stopping(self) -> bool:
        return bool(self.should_stop or self.app.should_stop)

    async def perform_seek(self) -> None:
        """faust's seek to the committed offsets, then the votes partitions to where their
        output in Redis ends."""
        await super().perform_seek()
        await self.seek_to_positions()

    async def seek_to_positions(self) -> None:
        positioner = getattr(self.app, "positioner", None)
        if positioner is None or self._stopping():
            return
        assigned = set(self.assignment())
        committed = {tp: self._committed_offset.get(tp) for tp in assigned}
        earliest = await self.earliest_offsets(*assigned) if assigned else {}
        positions = await positioner.positions(assigned, committed, earliest)
        if positions:  # in the consumer's thread (``seek`` would call aiokafka from this one,
            # racing its fetcher: a KeyError in ``Fetcher.fetched_records``), read offsets too
            await self.seek_wait(dict(positions))

    async def reposition(self) -> None:
        """Seek the votes partitions again to where Redis says their output ends (and the
        others to their committed offsets), with the flow stopped meanwhile."""
        if self._stopping():  # the partitions are let go; the next owner positions them
            return
        self.stop_flow()
        self.app.flow_control.suspend()
        try:
            if not await self._park():
                return  # a stop began meanwhile: the fetcher will not park, nor the thread seek
            await self.perform_seek()
        finally:
            self.app.flow_control.resume()
            self.resume_flow()

    async def _park(self) -> bool:
        """Wait until the fetcher parks (for ``PARK_TIMEOUT_S`` at most: then seek anyway);
        False if the worker started stopping meanwhile."""
        deadline = asyncio.get_running_loop().time() + PARK_TIMEOUT_S
        while not self._parked.is_set():
            if self._stopping():
                return False
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                log.warning("the fetcher did not park within %.0fs; seeking anyway",
                            PARK_TIMEOUT_S)
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._parked.wait(), min(left, PARK_POLL_S))
        return not self._stopping()


class _Transport(faust_aiokafka.Transport):
    Consumer = _Consumer


class App(faust.App):
    """``faust.App`` whose consumer long-polls for at most ``FETCH_MAX_WAIT_MS`` and seeks the
    votes partitions where ``positioner`` says (none: faust's committed offsets). At a stop,
    it waits for the batches in flight for ``stop_grace`` at most (services/rating/stop_grace.py;
    faust waits until they end, for ever while Redis is down)."""

    positioner: Positioner | None = None
    stop_grace: StopGrace | None = None

    async def _consumer_wait_empty(self, consumer: Any, logger: Any) -> None:
        grace = self.stop_grace
        if (grace is None or not self.should_stop or not self.conf.stream_wait_empty
                or not isinstance(consumer, _Consumer)):  # a rebalance: faust's own wait
            await super()._consumer_wait_empty(consumer, logger)
            return
        logger.info("Wait for streams (for up to %.1fs)...", grace.start())
        if not await consumer.wait_empty_within(grace):
            log.warning("the batches in flight did not end within %.1fs of the stop; stopping "
                        "without them (their offsets are not committed)", grace.seconds)

    async def reposition(self) -> None:
        """Seek the votes partitions again to where their output ends (see ``_Consumer``)."""
        consumer = self.consumer
        if not isinstance(consumer, _Consumer):
            raise TypeError(f"the app's consumer is a {type(consumer).__name__}")
        await consumer.reposition()

    def _new_transport(self) -> Any:
        return _Transport(self.conf.broker_consumer, self)
