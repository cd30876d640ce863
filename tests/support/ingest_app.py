"""ingest in-process (ASGI) with real Redis and a recording publisher, for the security tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import httpx
import redis.asyncio as aioredis

from services.ingest.app import create_app
from shared.events import ScoreEvent, Vote
from shared.settings import IngestSettings
from tests.support.infra import ADMIN_TOKEN, DEV_API_KEY, Infra


class RecordingPublisher:
    """Stands in for Kafka: what was 'acknowledged', in order."""

    def __init__(self) -> None:
        self.votes: list[Vote] = []
        self.scores: list[ScoreEvent] = []

    @property
    def ready(self) -> bool:
        return True

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def publish(self, votes: Sequence[Vote]) -> None:
        self.votes.extend(votes)

    async def publish_scores(self, scores: Sequence[ScoreEvent]) -> None:
        self.scores.extend(scores)

    def in_flight(self, vote_ids: Iterable[str]) -> set[str]:
        return set()


def ingest_settings(infra: Infra, prefix: str, **extra: Any) -> IngestSettings:
    values: dict[str, Any] = {
        "redis_url": infra.redis_url, "kafka_bootstrap": infra.kafka_bootstrap,
        "key_prefix": prefix, "topic_prefix": prefix + ".",
        "ingest_auto_register_models": True, "ingest_admin_token": ADMIN_TOKEN,
        "dev_api_key": DEV_API_KEY, **extra,
    }
    return IngestSettings(**values)


@asynccontextmanager
async def ingest_client(
    settings: IngestSettings, redis_client: aioredis.Redis
) -> AsyncIterator[tuple[httpx.AsyncClient, RecordingPublisher]]:
    publisher = RecordingPublisher()
    app = create_app(settings, publisher=publisher, redis_client=redis_client)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://ingest") as client:
            yield client, publisher
