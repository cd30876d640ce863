"""The ingest HTTP service: validate votes, produce them to Kafka, answer after the ack."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Annotated, Any

import orjson
from fastapi import Body, FastAPI, HTTPException, Request, Response, status
from fastapi.params import Depends as DependsParam
from pydantic import BaseModel, Field, TypeAdapter, ValidationError

from services.common.health import RedisProbe
from services.common.http import (
    BodyLimitMiddleware,
    OrjsonResponse,
    RequestAdmission,
    error_items,
    install_error_handlers,
)
from services.common.logcontext import bind_votes, request_id_var
from services.common.metrics import IngestMetrics, RequestContextMiddleware, metrics_response
from services.common.redis_client import RedisClient, check_topology, connect_for_requests
from services.common.registry import ModelRegistry
from services.ingest import security
from services.ingest.acceptor import (
    ClientKeyCheck,
    Submission,
    VoteAcceptor,
    unknown_models_detail,
)
from services.ingest.admin import admin_router
from services.ingest.limits import client_ip
from services.ingest.observability import VoteRejectionMiddleware
from services.ingest.publisher import (
    KafkaVotePublisher,
    PublishUnavailable,
    ScorePublisher,
    VoteIdMemory,
    VotePublisher,
)
from shared.events import ScoreEvent, Vote, utc_now
from shared.settings import IngestSettings

log = logging.getLogger(__name__)

JSON = "application/json"
NDJSON = "application/x-ndjson"
_votes = TypeAdapter(list[Vote])


def media_type(content_type: str) -> str:
    """The media type of a Content-Type header, without its parameters, lower case."""
    return content_type.partition(";")[0].strip().lower()


def accepting(*types: str) -> DependsParam:
    """A dependency answering 415 to a body of any other media type (a missing Content-Type
    included): a body a client labels otherwise is not one it meant as votes."""
    allowed = frozenset(types)
    names = " or ".join(types)

    def require(request: Request) -> None:
        given = media_type(request.headers.get("content-type", ""))
        if given not in allowed:
            raise HTTPException(
                status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
                f"Content-Type must be {names}, not {given or 'missing'}")

    return DependsParam(require)


class Accepted(BaseModel):
    accepted: list[str] = Field(
        description="vote_ids now durably in Kafka (new or retried), each once, in order.")
    duplicates: list[str] = Field(
        description="One entry per copy not counted again: a vote_id seen before within the "
        "dedupe window, or repeated in this request after its first copy (the first counts)."
    )


class InvalidBody(Exception):
    def __init__(self, detail: list[dict[str, Any]] | str) -> None:
        self.detail = detail


def parse_batch(body: bytes, content_type: str, max_batch: int) -> list[Vote]:
    """Decode a JSON array or NDJSON body into votes; all-or-nothing, errors by item index.

    A well-formed body is validated in one call straight from its bytes (an NDJSON body is
    joined into an array when every line is one object); anything else, or any error, takes
    the item-by-item path, which says exactly what is wrong and where."""
    if media_type(content_type) == NDJSON:
        lines = [line for line in body.splitlines() if line.strip()]
        # each line one object: a line holding two objects would need another holding none
        if lines and all(line.lstrip()[:1] == b"{" and line.rstrip()[-1:] == b"}"
                         for line in lines):
            joined = b"[" + b",".join(lines) + b"]"
            fast = _parsed(joined, len(lines), max_batch)
            if fast is not None:
                return fast
    elif body.lstrip()[:1] == b"[":
        fast = _parsed(body, None, max_batch)
        if fast is not None:
            return fast
    return _parse_items(body, content_type, max_batch)


def _parsed(array: bytes, expected: int | None, max_batch: int) -> list[Vote] | None:
    """Votes from a JSON array in one validation, or None (the careful path then explains)."""
    try:
        votes = _votes.validate_json(array)
    except ValidationError:
        return None
    ok = 0 < len(votes) <= max_batch and (expected is None or len(votes) == expected)
    return votes if ok else None


def _parse_items(body: bytes, content_type: str, max_batch: int) -> list[Vote]:
    items: list[Any]
    if media_type(content_type) == NDJSON:
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
    try:
        return _votes.validate_python(items)
    except ValidationError as exc:  # the same errors, by item index: ("body", index, field)
        raise InvalidBody(error_items(exc, prefix=("body",))) from exc


def create_app(
    settings: IngestSettings,
    publisher: VotePublisher | None = None,
    redis_client: RedisClient | None = None,
) -> FastAPI:
    """Wire the ingest service. Tests may pass their own publisher or Redis client."""
    metrics = IngestMetrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        own_publisher = publisher is None
        client = redis_client or connect_for_requests(settings)
        await check_topology(client)
        memory = VoteIdMemory(client, settings.keys, settings.ingest_dedupe_window_s,
                              write_retry_s=settings.ingest_dedupe_write_retry_s,
                              unremembered_max=settings.ingest_unremembered_max)
        pub = publisher or KafkaVotePublisher(settings, on_delivered=memory.remember)
        if isinstance(pub, KafkaVotePublisher) and own_publisher:
            await pub.start()
        app.state.publisher = pub
        app.state.memory = memory
        app.state.registry = ModelRegistry(client, settings.keys)
        app.state.redis = client
        app.state.redis_probe = RedisProbe(settings.redis_url)
        await security.start(app, client, settings)
        app.state.acceptor = VoteAcceptor(
            settings, pub, memory, app.state.registry, app.state.limiter,
            ClientKeyCheck(settings.keys, settings, app.state.client_keys.registered),
            metrics, client,
            max_groups_in_flight=settings.ingest_groups_in_flight,
        )
        try:
            yield
        finally:
            await app.state.acceptor.drain()
            if isinstance(pub, KafkaVotePublisher) and own_publisher:
                await pub.stop()
            await memory.close()
            await app.state.redis_probe.close()
            if redis_client is None:
                await client.aclose()

    app = FastAPI(
        title="Podium ingest",
        version="0.1.0",
        description="Accepts arena votes and publishes them to Kafka. A 202 means Kafka has "
        "acknowledged the vote (acks=all); on 503 retry with the same vote_id.",
        lifespan=lifespan,
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
    writer = security.install(app, settings)

    async def unknown_models(request: Request, model_ids: set[str]) -> OrjsonResponse | None:
        """A 422 naming the unregistered models, or None (registering them when so set)."""
        registry: ModelRegistry = request.app.state.registry
        if settings.ingest_auto_register_models:
            await registry.register_missing(model_ids)
            return None
        missing = await registry.unknown(model_ids)
        if not missing:
            return None
        return OrjsonResponse({"detail": unknown_models_detail(missing)}, status_code=422)

    async def accept(request: Request, votes: Sequence[Vote]) -> OrjsonResponse:
        bind_votes([v.vote_id for v in votes])
        acceptor: VoteAcceptor = request.app.state.acceptor
        answer = await acceptor.submit(Submission(
            votes, client_ip(request, settings.ingest_trust_forwarded_for),
            getattr(request.state, "client", None), request_id=request_id_var.get()))
        return OrjsonResponse(answer.body, status_code=answer.status, headers=answer.headers)

    responses: dict[int | str, dict[str, Any]] = {
        202: {"model": Accepted, "description": "Kafka acknowledged the votes."},
        413: {"description": "Body larger than the configured limit."},
        415: {"description": f"Content-Type is not {JSON} (or, for a batch, {NDJSON})."},
        422: {"description": "Invalid vote(s): field-level messages in `detail`."},
        503: {"description": "Kafka did not acknowledge; retry with the same vote_id."},
        **security.WRITE_RESPONSES,
    }

    json_only = [accepting(JSON), *writer]  # 415 before the key is looked up

    @app.post("/v1/votes", status_code=202, responses=responses, summary="Submit one vote",
              dependencies=json_only)
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
        dependencies=[accepting(JSON, NDJSON), *writer],
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

    async def accept_scores(request: Request, scores: Sequence[ScoreEvent]) -> OrjsonResponse:
        rejected = await unknown_models(request, {e.model for e in scores})
        if rejected is not None:
            return rejected
        limited = await security.limit(request, settings, [])
        if isinstance(limited, OrjsonResponse):
            return limited
        now = utc_now()
        stamped = [e if e.timestamp else e.model_copy(update={"timestamp": now}) for e in scores]
        pub: ScorePublisher = request.app.state.publisher
        try:
            await pub.publish_scores(stamped)
        except PublishUnavailable as exc:
            log.warning("503 for %d scores: %s", len(stamped), exc)
            return OrjsonResponse(
                {"detail": "Kafka could not acknowledge the scores; retry"},
                status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
                headers={"Retry-After": "1"},
            )
        return OrjsonResponse({"accepted": len(stamped)}, status_code=202)

    score_responses: dict[int | str, dict[str, Any]] = {
        202: {"description": "Kafka acknowledged the score events: `{\"accepted\": n}`."},
        413: responses[413],
        415: {"description": f"Content-Type is not {JSON}."},
        422: {"description": "Invalid score event(s) or unknown model(s)."},
        503: {"description": "Kafka did not acknowledge; retry."},
        **security.WRITE_RESPONSES,
    }

    @app.post("/v1/scores", status_code=202, responses=score_responses, dependencies=json_only,
              summary="Submit one benchmark score (feeds the bench/{benchmark} board)")
    async def post_score(
        request: Request, score: Annotated[ScoreEvent, Body(examples=[EXAMPLE_SCORE])]
    ) -> OrjsonResponse:
        return await accept_scores(request, [score])

    @app.post("/v1/scores/batch", status_code=202, responses=score_responses,
              dependencies=json_only,
              summary="Submit a batch of benchmark scores (JSON array, all or nothing)")
    async def post_scores(
        request: Request,
        scores: Annotated[list[ScoreEvent], Body(examples=[[EXAMPLE_SCORE]], max_length=10_000)],
    ) -> OrjsonResponse:
        if not scores:
            return OrjsonResponse({"detail": "the batch is empty"}, status_code=422)
        return await accept_scores(request, scores)

    @app.get("/healthz", summary="Liveness")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", summary="Readiness: Kafka producer connected, Redis reachable")
    async def readyz(request: Request) -> OrjsonResponse:
        pub = request.app.state.publisher
        kafka = not isinstance(pub, KafkaVotePublisher) or pub.ready
        redis = await request.app.state.redis_probe.reachable()
        ready = kafka and redis
        return OrjsonResponse(
            {"kafka": kafka, "redis": redis},
            status_code=200 if ready else status.HTTP_503_SERVICE_UNAVAILABLE,
        )

    @app.get("/metrics", summary="Prometheus metrics", include_in_schema=False)
    async def prometheus_metrics() -> Response:
        return metrics_response(metrics.registry)

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

EXAMPLE_SCORE: dict[str, Any] = {
    "model": "qwen3.5-max-preview",
    "benchmark": "gpqa-diamond",
    "score": 84.2,
    "source": "https://example.org/evals/gpqa-diamond",
}
