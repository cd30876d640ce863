"""Vote rejections of ingest, counted from the answers of the vote endpoints.

Kept outside the handlers: a refusal may come from validation, the body limit, the registry
check, Kafka, or the auth and rate-limit layers, and each answers with its own status. This
middleware sees every one of them, keeps the request body of a vote request, and on a refusal
counts the votes in it under a reason derived from the status (and, for 422, the error type).
"""

from __future__ import annotations

from collections.abc import Iterable

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.ingest.metrics import IngestMetrics

VOTE_PATHS = frozenset({"/v1/votes", "/v1/votes/batch"})
REASONS = {401: "unauthorized", 403: "unauthorized", 413: "too_large",
           415: "unsupported_media_type", 422: "invalid", 429: "rate_limited",
           499: "client_disconnected", 503: "kafka_unavailable"}


def votes_in(body: bytes, path: str) -> int:
    """How many votes a refused request carried (1 when it cannot be told)."""
    if path != "/v1/votes/batch" or not body:
        return 1
    try:
        decoded = orjson.loads(body)
    except orjson.JSONDecodeError:
        return max(1, sum(1 for line in body.splitlines() if line.strip()))
    return len(decoded) if isinstance(decoded, list) and decoded else 1


def rejection_reason(status: int, body: bytes) -> str:
    if status == 422 and b'"unknown_model"' in body:
        return "unknown_model"
    if status == 422 and b'"over_limit"' in body:
        return "over_limit"
    if status == 503 and b"Redis" in body:
        return "redis_unavailable"
    if status == 503 and b"busy" in body:
        return "overloaded"
    if status == 503 and b"another ingest instance" in body:
        return "vote_in_flight"
    return REASONS.get(status, "other")


class VoteRejectionMiddleware:
    def __init__(self, app: ASGIApp, metrics: IngestMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") not in VOTE_PATHS:
            await self.app(scope, receive, send)
            return
        request_chunks: list[bytes] = []
        response_chunks: list[bytes] = []
        status = 0

        async def keeping_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                request_chunks.append(message.get("body", b""))
            return message

        async def watching_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body" and status in (422, 503):
                response_chunks.append(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, keeping_receive, watching_send)
        finally:
            if status >= 400 or status == 0:
                self._count(scope["path"], status or 500, request_chunks, response_chunks)

    def _count(self, path: str, status: int, request: Iterable[bytes],
               response: Iterable[bytes]) -> None:
        reason = rejection_reason(status, b"".join(response))
        self.metrics.votes_rejected.labels(reason).inc(votes_in(b"".join(request), path))
