"""The routes of ingest's FastAPI app: votes (one, a batch), benchmark scores, and the probes
(liveness, readiness, metrics). A single vote usually never reaches its route here: the fast
path in front (``services.ingest.single_vote_route``) takes it; this route answers the rest."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Annotated, Any

from fastapi import Body, FastAPI, Request, Response, status
from fastapi.params import Depends as DependsParam
from pydantic import BaseModel, Field

from services.common.http import OrjsonResponse
from services.common.logcontext import bind_votes, request_id_var
from services.common.metrics import metrics_response
from services.common.registry import ModelRegistry
from services.ingest import defences
from services.ingest.acceptor import VoteAcceptor
from services.ingest.batch_body import JSON, NDJSON, InvalidBody, accepting, parse_batch
from services.ingest.limits import client_ip
from services.ingest.metrics import IngestMetrics
from services.ingest.publisher import PublishUnavailable, VotePublisher
from services.ingest.submission import Submission, unknown_models_detail
from shared.events import ScoreEvent, Vote, utc_now
from shared.settings import IngestSettings

log = logging.getLogger(__name__)

Responses = dict[int | str, dict[str, Any]]


class Accepted(BaseModel):
    accepted: list[str] = Field(
        description="vote_ids now durably in Kafka (new or retried), each once, in order.")
    duplicates: list[str] = Field(
        description="One entry per copy not counted again: a vote_id seen before within the "
        "dedupe window, or repeated in this request after its first copy (the first counts)."
    )


VOTE_RESPONSES: Responses = {
    202: {"model": Accepted, "description": "Kafka acknowledged the votes."},
    413: {"description": "Body larger than the configured limit."},
    415: {"description": f"Content-Type is not {JSON} (or, for a batch, {NDJSON})."},
    422: {"description": "Invalid vote(s): field-level messages in `detail`."},
    503: {"description": "Kafka did not acknowledge; retry with the same vote_id."},
    **defences.WRITE_RESPONSES,
}

SCORE_RESPONSES: Responses = {
    202: {"description": "Kafka acknowledged the score events: `{\"accepted\": n}`."},
    413: VOTE_RESPONSES[413],
    415: {"description": f"Content-Type is not {JSON}."},
    422: {"description": "Invalid score event(s) or unknown model(s)."},
    503: {"description": "Kafka did not acknowledge; retry."},
    **defences.WRITE_RESPONSES,
}


async def accept_votes(request: Request, settings: IngestSettings, votes: Sequence[Vote]
                       ) -> OrjsonResponse:
    """Hand a request's votes to the acceptor and answer what it answers."""
    bind_votes([v.vote_id for v in votes])
    acceptor: VoteAcceptor = request.app.state.acceptor
    answer = await acceptor.submit(Submission(
        votes, client_ip(request, settings.ingest_trust_forwarded_for),
        getattr(request.state, "client", None), request_id=request_id_var.get()))
    return OrjsonResponse(answer.body, status_code=answer.status, headers=answer.headers)


def add_vote_routes(app: FastAPI, settings: IngestSettings, writer: list[DependsParam]) -> None:
    """``POST /v1/votes`` and ``POST /v1/votes/batch``."""
    json_only = [accepting(JSON), *writer]  # 415 before the key is looked up

    @app.post("/v1/votes", status_code=202, responses=VOTE_RESPONSES, summary="Submit one vote",
              dependencies=json_only)
    async def post_vote(
        request: Request,
        vote: Annotated[Vote, Body(examples=[EXAMPLE_VOTE])],
    ) -> OrjsonResponse:
        return await accept_votes(request, settings, [vote])

    @app.post(
        "/v1/votes/batch",
        status_code=202,
        responses=VOTE_RESPONSES,
        summary="Submit a batch of votes (JSON array or NDJSON)",
        dependencies=[accepting(JSON, NDJSON), *writer],
        description=f"A JSON array of votes, or one vote per line with `Content-Type: {NDJSON}`. "
        "All or nothing: if any vote is invalid, none is accepted and `detail` lists the errors "
        "by index.",
        openapi_extra=BATCH_BODY,
    )
    async def post_batch(request: Request) -> OrjsonResponse:
        body = await request.body()
        try:
            votes = parse_batch(
                body, request.headers.get("content-type", ""), settings.ingest_max_batch
            )
        except InvalidBody as exc:
            return OrjsonResponse({"detail": exc.detail}, status_code=422)
        return await accept_votes(request, settings, votes)


async def unknown_models(request: Request, settings: IngestSettings, model_ids: set[str]
                         ) -> OrjsonResponse | None:
    """A 422 naming the unregistered models, or None (registering them when so set)."""
    registry: ModelRegistry = request.app.state.registry
    if settings.ingest_auto_register_models:
        await registry.register_missing(model_ids)
        return None
    missing = await registry.unknown(model_ids)
    if not missing:
        return None
    return OrjsonResponse({"detail": unknown_models_detail(missing)}, status_code=422)


async def accept_scores(request: Request, settings: IngestSettings,
                        scores: Sequence[ScoreEvent]) -> OrjsonResponse:
    """Check the models and the rate limits, stamp the scores, publish them: 202 after Kafka's
    ack, else the refusal."""
    rejected = await unknown_models(request, settings, {e.model for e in scores})
    if rejected is not None:
        return rejected
    limited = await defences.limit(request, settings, [])
    if isinstance(limited, OrjsonResponse):
        return limited
    now = utc_now()
    stamped = [e if e.timestamp else e.model_copy(update={"timestamp": now}) for e in scores]
    pub: VotePublisher = request.app.state.publisher
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


def add_score_routes(app: FastAPI, settings: IngestSettings, writer: list[DependsParam]) -> None:
    """``POST /v1/scores`` and ``POST /v1/scores/batch``."""
    json_only = [accepting(JSON), *writer]

    @app.post("/v1/scores", status_code=202, responses=SCORE_RESPONSES, dependencies=json_only,
              summary="Submit one benchmark score (feeds the bench/{benchmark} board)")
    async def post_score(
        request: Request, score: Annotated[ScoreEvent, Body(examples=[EXAMPLE_SCORE])]
    ) -> OrjsonResponse:
        return await accept_scores(request, settings, [score])

    @app.post("/v1/scores/batch", status_code=202, responses=SCORE_RESPONSES,
              dependencies=json_only,
              summary="Submit a batch of benchmark scores (JSON array, all or nothing)")
    async def post_scores(
        request: Request,
        scores: Annotated[list[ScoreEvent], Body(examples=[[EXAMPLE_SCORE]], max_length=10_000)],
    ) -> OrjsonResponse:
        if not scores:
            return OrjsonResponse({"detail": "the batch is empty"}, status_code=422)
        return await accept_scores(request, settings, scores)


def add_probe_routes(app: FastAPI, metrics: IngestMetrics) -> None:
    """``/healthz``, ``/readyz`` and ``/metrics``."""

    @app.get("/healthz", summary="Liveness")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", summary="Readiness: Kafka producer connected, Redis reachable, "
             "no system of record being replayed into Redis")
    async def readyz(request: Request) -> OrjsonResponse:
        pub: VotePublisher = request.app.state.publisher
        kafka = pub.ready
        redis = await request.app.state.redis_probe.reachable()
        restoring = request.app.state.replayer.restoring  # Redis lacks a system of record
        ready = kafka and redis and not restoring
        return OrjsonResponse(
            {"kafka": kafka, "redis": redis, "restoring": restoring},
            status_code=200 if ready else status.HTTP_503_SERVICE_UNAVAILABLE,
        )

    @app.get("/metrics", summary="Prometheus metrics", include_in_schema=False)
    async def prometheus_metrics() -> Response:
        return metrics_response(metrics.registry)


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

BATCH_BODY: dict[str, Any] = {
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
}
