"""The ingest HTTP service: validate votes, produce them to Kafka, answer after the ack.

``create_app(settings)`` is the service as ``python -m services.ingest`` serves it: the FastAPI
app (middleware, routes, the lifespan that connects Redis and Kafka) behind the single-vote
fast path."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager, suppress

from fastapi import FastAPI

from services.common.health import RedisProbe
from services.common.http import (
    BodyLimitMiddleware,
    OrjsonResponse,
    RequestAdmission,
    install_error_handlers,
)
from services.common.metrics import RequestContextMiddleware
from services.common.quarantine_records import QuarantineRecords
from services.common.records import Book, RecordWriter, Replayer, RestoreMetrics
from services.common.redis_client import RedisClient, check_topology, connect_for_requests
from services.common.registry import ModelRegistry
from services.common.release_records import ReleaseRecords
from services.ingest import defences
from services.ingest.acceptor import VoteAcceptor
from services.ingest.client_key_check import ClientKeyCheck
from services.ingest.client_keys import ClientKeys, register_dev_key
from services.ingest.kafka_publisher import KafkaVotePublisher
from services.ingest.metrics import IngestMetrics
from services.ingest.model_admin import admin_router
from services.ingest.publisher import VotePublisher
from services.ingest.rejection_metrics import VoteRejectionMiddleware
from services.ingest.release_admin import publish_on_schedule, release_router
from services.ingest.routes import add_probe_routes, add_score_routes, add_vote_routes
from services.ingest.single_vote_route import VoteFastPath
from services.ingest.vote_ids import VoteIdMemory
from shared.settings import IngestSettings


def create_app(
    settings: IngestSettings,
    publisher: VotePublisher | None = None,
    redis_client: RedisClient | None = None,
) -> VoteFastPath:
    """The ingest service as deployed: its FastAPI app behind the single-vote fast path. Tests
    may pass their own publisher or Redis client."""
    metrics = IngestMetrics()
    app = FastAPI(
        title="Podium ingest",
        version="0.1.0",
        description="Accepts arena votes and publishes them to Kafka. A 202 means Kafka has "
        "acknowledged the vote (acks=all); on 503 retry with the same vote_id.",
        lifespan=lifespan(settings, metrics, publisher, redis_client),
        default_response_class=OrjsonResponse,
        # no redirect to the path with(out) its trailing slash: Starlette builds that URL from
        # the Host header, which any client sets (docs/decisions.md: a 404 instead)
        redirect_slashes=False,
    )
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.ingest_max_body_bytes)
    # outside the body limit: a request waiting for its turn has not read its body yet
    app.add_middleware(RequestAdmission, limit=settings.http_max_requests_in_flight,
                       wait_s=settings.http_queue_timeout_s)
    app.state.metrics = metrics
    app.add_middleware(VoteRejectionMiddleware, metrics=metrics)
    app.add_middleware(RequestContextMiddleware, metrics=metrics)  # outermost
    install_error_handlers(app)
    app.include_router(admin_router(settings))
    app.include_router(release_router(settings))
    writer = defences.install(app, settings)
    add_vote_routes(app, settings, writer)
    add_score_routes(app, settings, writer)
    add_probe_routes(app, metrics)
    return VoteFastPath(app, settings)  # the hot write skips FastAPI's routing


def lifespan(
    settings: IngestSettings,
    metrics: IngestMetrics,
    publisher: VotePublisher | None,
    redis_client: RedisClient | None,
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """Connect Redis and Kafka (``publisher`` and ``redis_client`` when given: the caller's),
    build the acceptor; at shutdown drain it and close what was opened here."""

    @asynccontextmanager
    async def running(app: FastAPI) -> AsyncIterator[None]:
        client = redis_client or connect_for_requests(settings)
        await check_topology(client)
        memory = VoteIdMemory(client, settings.keys, settings.ingest_dedupe_window_s,
                              write_retry_s=settings.ingest_dedupe_write_retry_s,
                              unremembered_max=settings.ingest_unremembered_max,
                              claim_ttl_s=settings.ingest_in_flight_ttl_s)
        pub = publisher or KafkaVotePublisher(settings, on_delivered=memory.remember,
                                              on_failed=memory.release,
                                              on_pending=memory.renew)
        await pub.start()
        app.state.publisher = pub
        app.state.memory = memory
        topics = settings.topics
        records = RecordWriter(settings.kafka_bootstrap,
                               [topics.models, topics.clients, topics.quarantine,
                                topics.releases],
                               settings.ingest_kafka_ack_timeout_s, "podium-ingest-records")
        app.state.registry = ModelRegistry(client, settings.keys, records, topics.models)
        app.state.quarantine_records = QuarantineRecords(client, settings.keys, records,
                                                         topics.quarantine)
        app.state.releases = ReleaseRecords(client, settings.keys, records, topics.releases)
        app.state.redis = client
        app.state.redis_probe = RedisProbe(settings.redis_url)
        await defences.start(app, client, settings, records)
        app.state.replayer = ingest_replayer(app, client, settings, metrics)
        app.state.replayer.start()
        app.state.acceptor = VoteAcceptor(
            settings, pub, memory, app.state.registry, app.state.limiter,
            ClientKeyCheck(settings.keys, settings, app.state.client_keys.registered),
            metrics, client,
            max_groups_in_flight=settings.ingest_groups_in_flight,
        )
        schedule = (asyncio.create_task(publish_on_schedule(app, settings))
                    if settings.ingest_release_every_s > 0 else None)
        try:
            yield
        finally:
            if schedule is not None:
                schedule.cancel()
                with suppress(asyncio.CancelledError):
                    await schedule
            await app.state.replayer.stop()
            await app.state.acceptor.drain()
            await records.stop()
            await pub.stop()
            await memory.close()
            await app.state.redis_probe.close()
            if redis_client is None:
                await client.aclose()

    return running


def ingest_replayer(app: FastAPI, client: RedisClient, settings: IngestSettings,
                    metrics: IngestMetrics) -> Replayer:
    """Replays the models, clients and releases topics into Redis at start and whenever Redis
    lost them (services/common/records.py); after the clients, the dev key is registered
    again."""
    keys, topics = settings.keys, settings.topics
    registry: ModelRegistry = app.state.registry
    client_keys: ClientKeys = app.state.client_keys

    def marker(topic: str) -> Callable[[], Awaitable[str]]:
        async def name() -> str:
            return keys.restored(topic)
        return name

    async def dev_key_again() -> None:
        await register_dev_key(client_keys, settings, durable=True)

    books = [
        Book(topics.models, registry.apply_records, marker(topics.models), registry.replayed),
        Book(topics.clients, client_keys.apply_records, marker(topics.clients), dev_key_again),
        Book(topics.releases, app.state.releases.apply_records, marker(topics.releases)),
    ]
    return Replayer(client, settings.kafka_bootstrap, books, settings.records_check_s,
                    RestoreMetrics(metrics.registry, "ingest"))
