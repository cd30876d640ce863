"""The hot write, served before FastAPI's routing: ``POST /v1/votes`` with a JSON vote and an
unsigned client key (or none, where auth is off). It reads the body, validates it with the same
``Vote`` model and hands it to the acceptor, which checks the key together with the other
requests of its group. Everything else — signed requests, invalid or oversized bodies, other
routes — goes to the FastAPI app unchanged (the body already read is replayed), which answers
with the documented errors. Request count and latency are recorded as the middleware would.
"""

from __future__ import annotations

import itertools
import os
import time
from typing import Any

import orjson
from fastapi import FastAPI
from pydantic import ValidationError
from starlette.requests import ClientDisconnect
from starlette.types import Receive, Scope, Send

from services.common.fast_path import FastPath
from services.common.http import (
    CLIENT_CLOSED_REQUEST,
    BodyLimitMiddleware,
    client_gone,
    ip_of,
    read_body,
    replay_body,
)
from services.common.uvicorn_internals import write_would_wait
from services.ingest.acceptor import VoteAcceptor
from services.ingest.metrics import IngestMetrics
from services.ingest.submission import Answer, Submission
from shared.events import Vote
from shared.settings import IngestSettings

PATH = "/v1/votes"
# a transport with more than this unsent is not written to by a group (see _Responder): far
# below the high-water mark (64 KiB) at which uvicorn's send would wait
QUIET_WRITE_BUFFER_BYTES = 16 * 1024
# headers that send a request to the documented route: signatures are checked there
SLOW_HEADERS = frozenset({b"x-podium-signature", b"x-podium-key-id"})


class VoteFastPath(FastPath):
    """Wraps ingest's FastAPI app (outermost, so no middleware runs for the hot write)."""

    def __init__(self, app: FastAPI, settings: IngestSettings) -> None:
        super().__init__(app)
        self._settings = settings
        # request ids for requests that bring none: unique per process, cheaper than uuid4
        self._id_prefix = os.urandom(6).hex() + "-"
        self._ids = itertools.count(1)
        self._metrics: IngestMetrics | None = None
        self._counted: dict[int, Any] = {}
        self._timed: Any = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        acceptor: VoteAcceptor | None = None
        if (scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != PATH
                or scope["query_string"]
                or (acceptor := getattr(self.app.state, "acceptor", None)) is None):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        api_key = None
        request_id = ""
        forwarded = ""
        json_body = False
        for name, value in scope["headers"]:
            if name in SLOW_HEADERS:
                await self.app(scope, receive, send)
                return
            if name == b"x-api-key":
                api_key = value.decode("latin-1")
            elif name == b"authorization" and value[:7].lower() == b"bearer ":
                api_key = api_key or value[7:].decode("latin-1").strip()
            elif name == b"content-type":  # application/json, parameters or not
                json_body = value[:16].lower() == b"application/json" and value[16:17] in b" ;"
            elif name == b"content-length":
                if not value.isdigit() or int(value) > self._settings.ingest_max_body_bytes:
                    json_body = False
            elif name == b"x-request-id":
                request_id = value.decode("latin-1")[:128]
            elif name == b"x-forwarded-for":
                forwarded = value.decode("latin-1")
        if not json_body or (api_key is None and self._settings.ingest_require_auth):
            await self.app(scope, receive, send)
            return
        try:
            body, complete = await read_body(receive, self._settings.ingest_max_body_bytes)
        except ClientDisconnect:  # nothing to publish, nobody to answer: counted, logged
            await self._client_gone(scope, send, acceptor.metrics)
            return
        if not complete:  # over the limit
            await BodyLimitMiddleware(self.app, self._settings.ingest_max_body_bytes).reject(send)
            return
        try:
            vote = Vote.model_validate_json(body)
        except ValidationError:
            await self.app(scope, replay_body(body, receive), send)
            return
        request_id = request_id or f"{self._id_prefix}{next(self._ids):x}"
        responder = _Responder(send, request_id)
        metrics = acceptor.metrics
        try:
            answer = await acceptor.submit(Submission([vote], self._ip(scope, forwarded),
                                                      api_key=api_key, request_id=request_id,
                                                      respond=responder.if_ready))
        except Exception:  # the server answers 500: counted like every other answer
            metrics.requests.labels("POST", PATH, "500").inc()
            raise
        if answer.reason:
            metrics.votes_rejected.labels(answer.reason).inc()
        await responder(answer)  # unless the group has
        self._count(metrics, answer.status, started)

    @staticmethod
    async def _client_gone(scope: Scope, send: Send, metrics: IngestMetrics) -> None:
        await client_gone(scope, send)
        metrics.requests.labels("POST", PATH, str(CLIENT_CLOSED_REQUEST)).inc()
        metrics.votes_rejected.labels("client_disconnected").inc()

    def _count(self, metrics: IngestMetrics, status: int, started: float) -> None:
        """Count the answer and time the request, as the middleware would."""
        if metrics is not self._metrics:  # a new acceptor: its own metric children
            self._metrics, self._counted = metrics, {}
            self._timed = metrics.latency.labels("POST", PATH)
        counted = self._counted.get(status)
        if counted is None:  # labelled children looked up once (a lookup per request showed)
            counted = self._counted[status] = metrics.requests.labels("POST", PATH, str(status))
        counted.inc()
        self._timed.observe(time.perf_counter() - started)

    def _ip(self, scope: Scope, forwarded: str) -> str:
        client = scope.get("client")
        return ip_of(str(client[0]) if client else None, forwarded,
                     self._settings.ingest_trust_forwarded_for)


class _Responder:
    """Writes one request's answer, once: by its group right after Kafka's ack when the server
    can write it without waiting (``if_ready``), else by the request's own task."""

    __slots__ = ("_request_id", "_send", "_sent")

    def __init__(self, send: Send, request_id: str) -> None:
        self._send = send
        self._request_id = request_id
        self._sent = False

    async def if_ready(self, answer: Answer) -> bool:
        """Write the answer now if uvicorn will not wait to write it: one client that reads
        its answers slower than they come must not hold up the answers of its group. Else
        (or on another server) the request's own task writes."""
        if write_would_wait(self._send, QUIET_WRITE_BUFFER_BYTES):
            return False
        await self(answer)
        return True

    async def __call__(self, answer: Answer) -> None:
        if self._sent:
            return
        self._sent = True
        payload = orjson.dumps(answer.body)
        headers = [(b"content-type", b"application/json"),
                   (b"content-length", str(len(payload)).encode()),
                   (b"x-request-id", self._request_id.encode("latin-1"))]
        if answer.headers:
            headers += [(k.lower().encode(), v.encode()) for k, v in answer.headers.items()]
        await self._send({"type": "http.response.start", "status": answer.status,
                          "headers": headers})
        await self._send({"type": "http.response.body", "body": payload})
