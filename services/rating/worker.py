"""Wiring of the rating service: a faust app whose agent feeds vote batches to the processor."""

from __future__ import annotations

import asyncio
import logging
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import faust
import mode
import orjson
from aiokafka.errors import KafkaError

from services.common.logcontext import batch_context
from services.common.quarantine_records import QuarantineRecords
from services.common.records import Book, RecordWriter, Replayer
from services.common.redis_client import REDIS_RETRYABLE, RedisClient
from services.common.redis_client import connect as redis_connect
from services.common.registry import ModelRegistry
from services.rating import kafka_consumer
from services.rating.arena_slices import RawRecord
from services.rating.engine import FitOptions, StyleOptions
from services.rating.engine.sampling import SamplingOptions
from services.rating.health_server import HealthServer
from services.rating.kept_votes import mark_screen_restored, restore_kept_votes
from services.rating.metrics import RatingMetrics
from services.rating.processor import Outputs, Publish, RatingProcessor, ResumeHooks, Tuning
from services.rating.read_models import ReadModelWriter
from services.rating.resume import Resumer, StateLost
from services.rating.sampling_models import SamplingModels
from services.rating.scores import ScoreProcessor, raw_records, restored_marker
from services.rating.stop_grace import StopGrace, finish_even_if_cancelled
from services.rating.store import RatingStore
from services.rating.timers import (
    check_fences,
    flush_everything_owed,
    flush_read_models,
    flush_tick_s,
    refit_style_boards,
    through_cancels,
)
from services.rating.voter_screen import VoterScreen
from services.rating.voter_stats import ScreenOptions
from shared.events import ModelInfo
from shared.kafka import ensure_topics
from shared.releases import methodology
from shared.settings import RatingSettings

log = logging.getLogger(__name__)


def build_worker(settings: RatingSettings, metrics: RatingMetrics | None = None,
                 replication_factor: int = 1) -> faust.App:
    """A faust app consuming the votes topic in batches; nothing is connected until it runs.
    With ``rating_metrics_port`` set, it also serves /healthz, /readyz and /metrics.
    ``replication_factor``: of the topics faust creates itself (its leader topic)."""
    metrics = metrics or RatingMetrics()
    app = kafka_consumer.App(
        settings.rating_app_id,
        broker=f"kafka://{settings.kafka_bootstrap}",
        store="memory://",
        # faust makes an (unused, the store is in memory) tables directory; not in the cwd
        datadir=Path(tempfile.gettempdir()) / f"podium-{settings.rating_app_id}-data",
        web_enabled=False,
        topic_partitions=settings.votes_partitions,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        topic_replication_factor=replication_factor,
        broker_session_timeout=settings.rating_session_timeout_s,
        broker_heartbeat_interval=settings.rating_session_timeout_s / 5,
        key_serializer="raw",
        value_serializer="raw",
    )
    topics = settings.topics
    votes = app.topic(
        topics.votes, key_type=bytes, value_type=bytes, partitions=settings.votes_partitions
    )
    publish_dead = _publisher(app.topic(topics.votes_dlq, key_type=bytes, value_type=bytes,
                                        partitions=1))
    publish_changes = _publisher(app.topic(topics.rank_changes, key_type=bytes,
                                           value_type=bytes, partitions=1))
    scores = app.topic(topics.scores, key_type=bytes, value_type=bytes, partitions=1)
    resumer = _resumer(app, settings, metrics)
    grace = app.stop_grace = StopGrace(settings.rating_stop_grace_s)

    @app.agent(votes, name="rate-votes")
    async def rate(stream: faust.StreamT[bytes]) -> None:
        assert isinstance(stream, faust.Stream)  # take_events is on the class, not on StreamT
        await rate_votes(stream, settings, metrics, publish_dead, publish_changes,
                         app=app, resumer=resumer, grace=grace)

    if settings.rating_metrics_port:
        _serve_health(app, HealthServer(settings, metrics, resumer.rewinds.pending))

    @app.agent(scores, name="rate-scores")
    async def rate_scores(stream: faust.StreamT[bytes]) -> None:
        assert isinstance(stream, faust.Stream)
        await rate_benchmark_scores(stream, settings, publish_changes, metrics, grace)

    return app


def _resumer(app: kafka_consumer.App, settings: RatingSettings,
             metrics: RatingMetrics) -> Resumer:
    """The app's positioner: votes partitions resume after what Redis holds (resume.py); its
    Redis client is made when first needed and closed with the app."""
    clients: list[RedisClient] = []

    def client() -> RedisClient:
        if not clients:
            clients.append(redis_connect(settings.redis_url))
        return clients[0]

    resumer = Resumer(client, settings.keys, settings.topics.votes, metrics)
    app.positioner = resumer

    @app.service
    class ResumerClient(mode.Service):
        async def on_stop(self) -> None:
            for c in clients:
                await c.aclose()

    return resumer


def _publisher(topic: Any) -> Publish:
    """Sends values to a faust topic and waits for the broker's acks of all of them."""

    async def publish(values: Sequence[bytes]) -> None:
        pending = [await topic.send(value=v) for v in values]
        await asyncio.gather(*pending)

    return publish


def _serve_health(app: faust.App, server: HealthServer) -> None:
    """Run the health and metrics server as a service of the faust app."""

    @app.service
    class HealthService(mode.Service):
        async def on_start(self) -> None:
            await server.start()

        async def on_stop(self) -> None:
            await server.stop()


def read_model_writer(client: RedisClient, settings: RatingSettings,
                      sampling: SamplingModels | None = None) -> ReadModelWriter:
    return ReadModelWriter(client, settings.keys, settings.rating_history_interval_s,
                           settings.rating_history_max_points, time.monotonic,
                           matrices_interval_s=settings.rating_matrices_interval_s,
                           sampling=sampling)


def sampling_models(client: RedisClient, settings: RatingSettings) -> SamplingModels:
    """The next-battle samplers' writer, with the registry (deprecated models, organizations)
    read at its version (cached between changes)."""
    registry = ModelRegistry(client, settings.keys)

    async def models() -> dict[str, ModelInfo]:
        return await registry.all_at(await registry.version())

    options = SamplingOptions(
        floor=settings.rating_sampling_floor,
        new_model_boost=settings.rating_sampling_new_model_boost,
        new_model_votes=settings.rating_sampling_new_model_votes,
        org_cap=settings.rating_sampling_org_cap,
        top_k=settings.rating_sampling_top_k,
    )
    return SamplingModels(client, settings.keys, models, options,
                          settings.rating_sampling_interval_s)


def _records(events: Sequence[Any]) -> list[RawRecord]:
    return [RawRecord(e.message.topic, e.message.partition, e.message.offset, e.value)
            for e in events]


async def rate_votes(
    stream: faust.Stream[bytes],
    settings: RatingSettings,
    metrics: RatingMetrics,
    publish_dead: Publish,
    publish_changes: Publish,
    app: kafka_consumer.App | None = None,
    resumer: Resumer | None = None,
    grace: StopGrace | None = None,
) -> None:
    """The votes agent: each batch of events through the processor, with the style refit,
    owed read model and fence check timers beside it; owed read models are written before it
    stops. With ``resumer``, a Redis that lost applied votes rewinds the partitions (``app``'s
    consumer seeks) and the records fetched before the rewind are dropped."""
    await wait_for_kafka(settings)
    client = redis_connect(settings.redis_url)
    screen = voter_screen(client, settings)
    grace = grace or StopGrace(settings.rating_stop_grace_s)
    sampling = sampling_models(client, settings)
    processor = RatingProcessor(
        RatingStore(client, settings.keys, settings.sampling_window_s),
        Outputs(publish_dead, publish_changes, read_model_writer(client, settings, sampling),
                metrics),
        tuning(settings),
        screen=screen,
        generations_of=settings.keys,
        resume=resume_hooks(settings, app, resumer),
    )
    timers = [asyncio.ensure_future(refit_style_boards(processor, settings)),
              asyncio.ensure_future(flush_read_models(processor, flush_tick_s(settings)))]
    if resumer is not None:
        resumer.on_reposition.append(processor.repositioned)
        resumer.lock = processor.lock
        timers.append(asyncio.ensure_future(check_fences(processor, resumer, metrics, settings)))
    try:
        async for events in stream.take_events(
            settings.rating_batch_max, within=settings.rating_batch_within_s
        ):
            records = _records(events)
            with batch_context(_describe(records)):
                await finish_even_if_cancelled(processor.process(records), events, grace)
    finally:
        async def wind_down() -> None:
            for task in timers:
                task.cancel()
            await asyncio.gather(*timers, return_exceptions=True)
            if grace.gave_up:
                log.warning("owed read models not written at stop (a batch was given up)")
            else:
                await flush_everything_owed(processor)
            if screen is not None:
                await screen.close()  # its producer of the quarantine topic
            await sampling.close()
            await client.aclose()

        await through_cancels(wind_down())


async def rate_benchmark_scores(
    stream: faust.Stream[bytes], settings: RatingSettings, publish_changes: Publish,
    metrics: RatingMetrics | None = None,
    grace: StopGrace | None = None,
) -> None:
    """The scores agent: each batch of benchmark score events through ``ScoreProcessor``, into
    the live generation. Beside it, the replayer of what Redis must not lose: the scores topic
    into a live generation that lacks it, the quarantine topic (services/common/records.py)."""
    await wait_for_kafka(settings)
    client = redis_connect(settings.redis_url)
    processor = ScoreProcessor(client, settings.keys, publish_changes,
                               read_models=read_model_writer(client, settings),
                               generations_of=settings.keys)
    await write_methodology(client, settings)
    replayer = worker_replayer(client, settings, processor, metrics)
    replayer.start()
    grace = grace or StopGrace(settings.rating_stop_grace_s)
    try:
        async for events in stream.take_events(
            settings.rating_batch_max, within=settings.rating_batch_within_s
        ):
            await finish_even_if_cancelled(processor.process(_records(events)), events, grace)
    finally:
        await replayer.stop()
        await client.aclose()


def worker_replayer(client: RedisClient, settings: RatingSettings, scores: ScoreProcessor,
                    metrics: RatingMetrics | None) -> Replayer:
    """Replays the scores topic into the live generation and the quarantine topic into Redis,
    at start and whenever Redis lost them (checked every ``records_check_s``)."""
    keys, topics = settings.keys, settings.topics
    decisions = QuarantineRecords(client, keys, None, topics.quarantine)

    async def apply_scores(records: Sequence[Any]) -> None:
        await scores.process(raw_records(records))

    async def scores_marker() -> str:
        return await restored_marker(client, keys, topics.scores)

    async def quarantine_marker() -> str:
        return keys.restored(topics.quarantine)

    async def kept_votes() -> None:  # the flags are back: their quarantine lists too
        await mark_screen_restored(client, keys, settings.kafka_bootstrap, topics.votes,
                                   settings.rating_app_id)
        await restore_kept_votes(client, keys, settings.kafka_bootstrap)
        await write_methodology(client, settings)  # what releases record, lost with Redis

    books = [Book(topics.quarantine, decisions.apply_records, quarantine_marker, kept_votes),
             Book(topics.scores, apply_scores, scores_marker, compacted=False)]
    return Replayer(client, settings.kafka_bootstrap, books, settings.records_check_s,
                    None if metrics is None else metrics.restore)


async def write_methodology(client: RedisClient, settings: RatingSettings) -> None:
    """The worker's methodology settings into Redis, for the releases ingest publishes
    (shared/releases.py); written at start and after a wipe, retried until Redis takes it."""
    value = orjson.dumps(methodology(settings))
    delay = 0.2
    while True:
        try:
            await client.set(settings.keys.methodology(), value)
            return
        except REDIS_RETRYABLE as exc:
            log.warning("methodology not written yet (%s); retrying", exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


def tuning(settings: RatingSettings) -> Tuning:
    """The processor's fits: the plain boards' (``rating_preliminary_votes``,
    ``rating_fit_tol``); the style-controlled boards', those reweighted as arena-rank's
    contextual fit with ``rating_style_reg``; rank moves over ``rating_rank_change_window_s``."""
    fit = FitOptions(preliminary_votes=settings.rating_preliminary_votes,
                     tol=settings.rating_fit_tol)
    style = StyleOptions(board=FitOptions(reweighted=True, preliminary_votes=fit.preliminary_votes,
                                          tol=fit.tol),
                         reg=settings.rating_style_reg)
    return Tuning(fit=fit, style=style,
                  rank_change_window_s=settings.rating_rank_change_window_s,
                  chunk_votes=settings.rating_apply_chunk_votes)


def resume_hooks(settings: RatingSettings, app: kafka_consumer.App | None,
                 resumer: Resumer | None) -> ResumeHooks:
    """The processor's hooks into ``resumer``: each batch drops the records fetched before a
    rewind; a Redis that lost applied votes rewinds the partitions (``app``'s consumer seeks).
    Without a resumer (or an app), ``StateLost`` is raised out of the batch."""
    if resumer is None:
        return ResumeHooks()
    votes_topic = settings.topics.votes

    def admit(records: Sequence[RawRecord]) -> list[RawRecord]:
        return resumer.rewinds.admit(records, votes_topic)

    async def on_state_lost(lost: StateLost) -> None:
        if app is None:
            raise lost
        await resumer.reposition(app, lost)

    def applied(records: Sequence[RawRecord]) -> None:
        resumer.rewinds.applied(records, votes_topic)

    return ResumeHooks(admit, on_state_lost, applied)


def _describe(records: Sequence[RawRecord]) -> str:
    """``topic/partition@first-last`` of a batch, for its log lines."""
    if not records:
        return "empty"
    first, last = records[0], records[-1]
    return f"{first.topic}/{first.partition}@{first.offset}-{last.offset} ({len(records)})"


def voter_screen(client: RedisClient, settings: RatingSettings) -> VoterScreen | None:
    if not settings.rating_screen_enabled:
        return None
    options = ScreenOptions(threshold=settings.rating_screen_threshold,
                            epsilon=settings.rating_screen_epsilon)
    records = RecordWriter(settings.kafka_bootstrap, [settings.topics.quarantine],
                           client_id="podium-rating-records")
    decisions = QuarantineRecords(client, settings.keys, records, settings.topics.quarantine)
    return VoterScreen(client, settings.keys, options, decisions)


def worker_topics(settings: RatingSettings) -> dict[str, int]:
    """The worker's topics and their partitions."""
    topics = settings.topics
    return {topics.votes: settings.votes_partitions, topics.votes_dlq: 1,
            topics.rank_changes: 1, topics.scores: 1}


async def wait_for_kafka(settings: RatingSettings) -> int:
    """Wait until Kafka is up and the worker's topics exist (creating them, the quarantine
    topic compacted); returns the replication factor that topics get on this cluster."""
    wanted = {**worker_topics(settings), settings.topics.quarantine: 1}
    delay = 0.2
    while True:
        try:
            return await ensure_topics(settings.kafka_bootstrap, wanted,
                                       compacted=[settings.topics.quarantine])
        except (KafkaError, OSError) as exc:
            log.warning("could not create topics yet (%s); retrying", exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
