"""The ingest HTTP service: validate votes, produce them to Kafka, answer after the ack."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Annotated, Any

import orjson
import redis.asyncio as aioredis
from fastapi import Body, FastAPI, Request, status
from pydantic import BaseModel, Field, TypeAdapter, ValidationError

from services.common.http import (
    BodyLimitMiddleware,
    OrjsonResponse,
    error_items,
    install_error_handlers,
)
from services.ingest.publisher import (
    KafkaVotePublisher,
    PublishUnavailable,
    VoteIdMemory,
    VotePublisher,
    VotesInProgress,
)
from shared.events import Vote, utc_now
from shared.settings import IngestSettings

log = logging.getLogger(__name__)

NDJSON = "application/x-ndjson"
_vote_list = TypeAdapter(list[dict[str, Any]])


class Accepted(BaseModel):
    accepted: list[str] = Field(description="vote_ids now durably in Kafka (new or retried).")
    duplicates: list[str] = Field(
        description="vote_ids seen before within the dedupe window: accepted, not counted twice."
    )


class InvalidBody(Exception):
    def __init__(self, detail: list[dict[str, Any]] | str) -> None:
        self.detail = detail


def parse_batch(body: bytes, content_type: str, max_batch: int) -> list[Vote]:
    """Decode a JSON array or NDJSON body into votes; all-or-nothing, errors by item index."""
    items: list[Any]
    if content_type.startswith(NDJSON):
        items = []
        for lineno, line in enumerate(body.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                items.append(orjson.loads(line))
            except orjson.JSONDecodeError as exc:
                raise InvalidBody(f"line {lineno} is not valid JSON: {exc}") from exc
    else:
        try:
            decoded = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise InvalidBody(f"body is not valid JSON: {exc}") from exc
        if not isinstance(decoded, list):
            raise InvalidBody(f"a batch is a JSON array of votes (or NDJSON with {NDJSON})")
        items = decoded
    if not items:
        raise InvalidBody("the batch is empty")
    if len(items) > max_batch:
        raise InvalidBody(f"the batch has {len(items)} votes; the limit is {max_batch}")
    votes: list[Vote] = []
    errors: list[dict[str, Any]] = []
    for index, item in enumerate(items):
        try:
            votes.append(Vote.model_validate(item))
        except ValidationError as exc:
            errors.extend(error_items(exc, prefix=("body", index)))
    if errors:
        raise InvalidBody(errors)
    return votes


def create_app(
    settings: IngestSettings,
    publisher: VotePublisher | None = None,
    redis_client: aioredis.Redis | None = None,
) -> FastAPI:
    """Wire the ingest service. Tests may pass their own publisher or Redis client."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        own_publisher = publisher is None
        client = redis_client or aioredis.Redis.from_url(settings.redis_url)
        memory = VoteIdMemory(client, settings.keys, settings.ingest_dedupe_window_s)
        pub = publisher or KafkaVotePublisher(settings, on_delivered=memory.remember)
        if isinstance(pub, KafkaVotePublisher) and own_publisher:
            await pub.start()
        app.state.publisher = pub
        app.state.memory = memory
        app.state.in_progress = VotesInProgress()
        try:
            yield
        finally:
            if isinstance(pub, KafkaVotePublisher) and own_publisher:
                await pub.stop()
            if redis_client is None:
                await client.aclose()

    app = FastAPI(
        title="Podium ingest",
        version="0.1.0",
        description="Accepts arena votes and publishes them to Kafka. A 202 means Kafka has "
        "acknowledged the vote (acks=all); on 503 retry with the same vote_id.",
        lifespan=lifespan,
        default_response_class=OrjsonResponse,
    )
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.ingest_max_body_bytes)
    install_error_handlers(app)

    async def accept(request: Request, votes: Sequence[Vote]) -> OrjsonResponse:
        in_progress: VotesInProgress = request.app.state.in_progress
        async with in_progress.hold(v.vote_id for v in votes):
            return await accept_held(request, votes)

    async def accept_held(request: Request, votes: Sequence[Vote]) -> OrjsonResponse:
        memory: VoteIdMemory = request.app.state.memory
        pub: VotePublisher = request.app.state.publisher
        ids = [v.vote_id for v in votes]
        seen = await memory.seen(ids)
        fresh: dict[str, Vote] = {}
        now = utc_now()
        for v in votes:
            if v.vote_id not in seen and v.vote_id not in fresh:
                fresh[v.vote_id] = v.model_copy(update={"received_at": now})
        try:
            await pub.publish(list(fresh.values()))
        except PublishUnavailable as exc:
            log.warning("503 for %d votes: %s", len(fresh), exc)
            return OrjsonResponse(
                {"detail": "Kafka could not acknowledge the votes; retry with the same vote_id"},
                status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
                headers={"Retry-After": "1"},
            )
        await memory.remember(fresh.keys())
        duplicates = [i for i in ids if i not in fresh]
        return OrjsonResponse(
            Accepted(accepted=ids, duplicates=duplicates).model_dump(),
            status_code=status.HTTP_202_ACCEPTED,
        )

    responses: dict[int | str, dict[str, Any]] = {
        202: {"model": Accepted, "description": "Kafka acknowledged the votes."},
        413: {"description": "Body larger than the configured limit."},
        422: {"description": "Invalid vote(s): field-level messages in `detail`."},
        503: {"description": "Kafka did not acknowledge; retry with the same vote_id."},
    }

    @app.post("/v1/votes", status_code=202, responses=responses, summary="Submit one vote")
    async def post_vote(
        request: Request,
        vote: Annotated[Vote, Body(examples=[EXAMPLE_VOTE])],
    ) -> OrjsonResponse:
        return await accept(request, [vote])

    @app.post(
        "/v1/votes/batch",
        status_code=202,
        responses=responses,
        summary="Submit a batch of votes (JSON array or NDJSON)",
        description=f"A JSON array of votes, or one vote per line with `Content-Type: {NDJSON}`. "
        "All or nothing: if any vote is invalid, none is accepted and `detail` lists the errors "
        "by index.",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {"type": "array", "items": {"$ref": "#/components/schemas/Vote"}},
                        "example": [EXAMPLE_VOTE],
                    },
                    NDJSON: {"schema": {"type": "string"}},
                },
            }
        },
    )
    async def post_batch(request: Request) -> OrjsonResponse:
        body = await request.body()
        try:
            votes = parse_batch(
                body, request.headers.get("content-type", ""), settings.ingest_max_batch
            )
        except InvalidBody as exc:
            return OrjsonResponse({"detail": exc.detail}, status_code=422)
        return await accept(request, votes)

    @app.get("/healthz", summary="Liveness")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", summary="Readiness: Kafka producer connected")
    async def readyz(request: Request) -> OrjsonResponse:
        pub = request.app.state.publisher
        ready = not isinstance(pub, KafkaVotePublisher) or pub.ready
        return OrjsonResponse(
            {"kafka": ready}, status_code=200 if ready else status.HTTP_503_SERVICE_UNAVAILABLE
        )

    return app


EXAMPLE_VOTE: dict[str, Any] = {
    "vote_id": "3f1c9a7e-5d2b-4c1e-9a8f-0b6d2e4c7a11",
    "arena": "text",
    "model_a": "qwen3.5-max-preview",
    "model_b": "gpt-5.1-high",
    "winner": "model_a",
    "categories": ["coding", "hard_prompts"],
    "language": "en",
    "turns": 1,
    "anonymous": True,
    "voter": "u-81f2",
}
