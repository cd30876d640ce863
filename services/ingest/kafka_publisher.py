"""Publishing to Kafka: ``KafkaVotePublisher``, the ``VotePublisher`` of production (an
idempotent producer, acks=all, restarted when its sequence state breaks)."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import (
    InvalidProducerEpoch,
    InvalidProducerIdMapping,
    KafkaError,
    OutOfOrderSequenceNumber,
    UnknownProducerId,
)

from services.ingest.publisher import PublishUnavailable
from shared.events import ScoreEvent, Vote, encode_vote_record
from shared.kafka import ensure_topics
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


class KafkaVotePublisher:
    """Idempotent producer (acks=all) of votes to the votes topic, keyed by arena.

    The producer is (re)started in the background, so ingest comes up even while Kafka is
    down and answers 503 until Kafka is reachable.
    """

    def __init__(
        self,
        settings: IngestSettings,
        on_delivered: Callable[[list[str]], Awaitable[None]],
        on_failed: Callable[[list[str]], Awaitable[None]] | None = None,
        on_pending: Callable[[list[str]], Awaitable[None]] | None = None,
    ) -> None:
        self._settings = settings
        self._on_delivered = on_delivered
        self._on_failed = on_failed
        self._on_pending = on_pending
        self._keeper: asyncio.Task[None] | None = None
        self._releasing: set[asyncio.Task[None]] = set()
        self._in_flight: dict[str, asyncio.Future[Any]] = {}
        self._delivered: list[str] = []  # delivered, not remembered yet (one writer at a time)
        # sends whose caller timed out, and their vote ids
        self._orphans: dict[asyncio.Future[Any], list[str]] = {}
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
        if self._releasing:
            await asyncio.gather(*self._releasing, return_exceptions=True)
        if self._keeper is not None:
            self._keeper.cancel()
            await asyncio.gather(self._keeper, return_exceptions=True)

    def in_flight(self, vote_ids: Iterable[str]) -> set[str]:
        held = self._in_flight
        return {v for v in vote_ids if (ack := held.get(v)) is not None and not _failed(ack)}

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
                    self._orphans[ack] = ids
                    self._keep_claims()
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
            if earlier is not None and not _failed(earlier):
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
        remembers its vote ids while holding them, or releases their claims); a send whose
        caller gave up (timeout) is forgotten only once its delivery is remembered here, or
        its failure has released the claims here."""
        orphan = self._orphans.pop(ack, None) is not None
        if ack.cancelled() or ack.exception() is not None or not orphan:
            for vote_id in vote_ids:
                self._in_flight.pop(vote_id, None)
            if orphan and self._on_failed is not None:
                # nobody waits: give up the ids' claims here (a retry may produce them again)
                task = asyncio.ensure_future(self._on_failed(vote_ids))
                self._releasing.add(task)
                task.add_done_callback(self._releasing.discard)
            return
        self._remember_later(vote_ids)

    def _keep_claims(self) -> None:
        """While sends whose callers gave up are in flight, renew their ids' claims (a quarter
        of ``ingest_in_flight_ttl_s`` apart), so that a send pending longer than the claim's
        TTL (a long outage) is still not produced again by another instance."""
        if self._on_pending is not None and (self._keeper is None or self._keeper.done()):
            self._keeper = asyncio.ensure_future(self._renew_claims(self._on_pending))

    async def _renew_claims(self, renew: Callable[[list[str]], Awaitable[None]]) -> None:
        every = self._settings.ingest_in_flight_ttl_s / 4
        while self._orphans:
            await asyncio.sleep(every)  # a timer, not a wait for a state
            ids = [v for ack, vote_ids in list(self._orphans.items()) if not ack.done()
                   for v in vote_ids]
            if ids:
                await renew(ids)

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


def _failed(ack: asyncio.Future[Any]) -> bool:
    """Whether a send is settled without delivery (its ids may be sent again)."""
    return ack.done() and (ack.cancelled() or ack.exception() is not None)
