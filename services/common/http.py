"""ASGI pieces shared by the HTTP services: a request-body limit, validation-error bodies, the
client address, clients that go away mid-body, and the 503 of a request Redis cannot serve now."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.common.records import RecordUnavailable
from services.common.redis_client import REDIS_UNAVAILABLE

log = logging.getLogger(__name__)

# The status a request is counted under when its client went away before its body arrived
# (nginx's "client closed request"): nobody reads the answer, the metrics see it.
CLIENT_CLOSED_REQUEST = 499

# The answer to a request that needed Redis while Redis was down, restarting, or so busy that no
# pooled connection came free within the wait: a retryable 503, never a 500.
REDIS_RETRY_AFTER_S = 1
REDIS_UNAVAILABLE_DETAIL = ("Redis is unavailable or saturated (no connection within the wait); "
                            "retry after Retry-After seconds")
REDIS_UNAVAILABLE_BODY = orjson.dumps({"detail": REDIS_UNAVAILABLE_DETAIL})
REDIS_UNAVAILABLE_HEADERS = {"Retry-After": str(REDIS_RETRY_AFTER_S)}
_LOG_EVERY_S = 1.0
_last_logged = float("-inf")
_unlogged = 0


def note_redis_unavailable(exc: BaseException) -> None:
    """Log a request shed for want of Redis: at most once a second (a storm sheds thousands)."""
    global _last_logged, _unlogged
    now = time.monotonic()
    if now - _last_logged < _LOG_EVERY_S:
        _unlogged += 1
        return
    log.warning("503: Redis unavailable (%r); %d more since the last such line", exc, _unlogged)
    _last_logged, _unlogged = now, 0


async def send_redis_unavailable(send: Send) -> None:
    """The 503 for a request Redis cannot serve now, sent on a raw ASGI ``send``."""
    await _send_json(send, 503, REDIS_UNAVAILABLE_BODY,
                     [(b"retry-after", str(REDIS_RETRY_AFTER_S).encode())])


class BodyLimitMiddleware:
    """Answers 413 for a request body over ``max_bytes`` (Starlette has no default limit).

    A body without Content-Length (chunked) is read, up to the limit, before the app runs: a
    limit hit while the app reads would surface as FastAPI's generic 400."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit():
                if int(value) > self.max_bytes:
                    await self.reject(send)
                else:
                    await self.app(scope, receive, send)
                return
        try:
            body, complete = await read_body(receive, self.max_bytes)
        except ClientDisconnect:
            await client_gone(scope, send)
            return
        if not complete:
            await self.reject(send)
            return
        await self.app(scope, replay_body(body, receive), send)

    async def reject(self, send: Send) -> None:
        body = (
            b'{"detail":"request body is larger than the limit of '
            + str(self.max_bytes).encode()
            + b' bytes"}'
        )
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})


async def read_body(receive: Receive, max_bytes: int) -> tuple[bytes, bool]:
    """A request's body, and whether it is complete within ``max_bytes`` (else what was read:
    over the limit). Raises ``ClientDisconnect`` when the client goes away before its end."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise ClientDisconnect
        chunk = message.get("body", b"")
        chunks.append(chunk)
        size += len(chunk)
        if size > max_bytes:
            return b"".join(chunks), False
        if not message.get("more_body", False):
            return b"".join(chunks), True


def replay_body(body: bytes, receive: Receive) -> Receive:
    """A receive that yields a body already read, then defers to the real one."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def client_gone(scope: Scope, send: Send) -> None:
    """A request whose client went away before its body arrived: logged at INFO, without a
    traceback, and answered ``CLIENT_CLOSED_REQUEST`` (which nobody reads; the middleware that
    counts requests sees it)."""
    client = scope.get("client")
    log.info("client %s went away before the body of %s %s arrived",
             client[0] if client else "?", scope.get("method", "?"), scope.get("path", "?"))
    body = b'{"detail":"the client closed the connection before the body arrived"}'
    await send({"type": "http.response.start", "status": CLIENT_CLOSED_REQUEST,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def ip_of(peer: str | None, forwarded_for: str, trust_forwarded_for: bool) -> str:
    """The address a request is charged to: the first X-Forwarded-For hop when trusted (the
    service behind a proxy), else the peer address. Only this setting decides: the server does
    not rewrite the peer address from the header (``serve`` turns uvicorn's proxy headers off).
    """
    if trust_forwarded_for:
        first = forwarded_for.split(",")[0].strip()
        if first:
            return first[:64]
    return peer or "unknown"


BUSY_DETAIL = ("the service is busy (too many requests in progress); retry after Retry-After "
               "seconds")
BUSY_BODY = orjson.dumps({"detail": BUSY_DETAIL})


class RequestAdmission:
    """At most ``limit`` requests in the app at once; the others wait their turn in arrival
    order, up to ``wait_s``, then are answered 503 + Retry-After.

    Why: a request makes its Redis commands one after another, and each waits for a pooled
    connection. Without a bound on the requests in progress, a burst of thousands puts every
    command of every request in one queue, so a request that got its first connection waits
    behind the whole burst for its second, and nearly all time out (measured: 5,000 concurrent
    api reads, 100 answered, 4,900 shed). Admitted requests find connections free; the rest
    wait before they start, where waiting costs nothing but a coroutine. Probes, metrics and
    streams (``exempt``) are never held back."""

    def __init__(self, app: ASGIApp, limit: int, wait_s: float,
                 exempt: tuple[str, ...] = ("/healthz", "/readyz", "/metrics")) -> None:
        self.app = app
        self._limit = limit
        self._wait_s = wait_s
        self._exempt = exempt
        self._slots: asyncio.Semaphore | None = None  # made in the serving loop

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(self._exempt):
            await self.app(scope, receive, send)
            return
        if self._slots is None:
            self._slots = asyncio.Semaphore(self._limit)
        slots = self._slots
        try:
            async with asyncio.timeout(self._wait_s):
                await slots.acquire()
        except TimeoutError:
            await _send_json(send, 503, BUSY_BODY, [(b"retry-after", b"1")])
            return
        try:
            await self.app(scope, receive, send)
        finally:
            slots.release()


async def _send_json(send: Send, status: int, body: bytes,
                     headers: list[tuple[bytes, bytes]]) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()), *headers]})
    await send({"type": "http.response.body", "body": body})


def error_items(exc: ValidationError, prefix: tuple[str | int, ...] = ()) -> list[dict[str, Any]]:
    """Pydantic errors as small JSON-ready items: where, what, and which rule."""
    return [
        {"loc": [*prefix, *err["loc"]], "msg": err["msg"], "type": err["type"]}
        for err in exc.errors(include_url=False, include_input=False)
    ]


class OrjsonResponse(JSONResponse):
    """JSON via orjson (numpy-free, fast); FastAPI's ORJSONResponse is deprecated. A
    ``JSONResponse`` so that OpenAPI documents a route's ``response_model`` (FastAPI documents
    the body of any other response class as a string)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def install_error_handlers(app: FastAPI) -> None:
    """422 bodies in one shape everywhere: ``{"detail": [{"loc", "msg", "type"}, ...]}``; a
    client gone before its body arrived: logged at INFO, answered (and counted) 499; and 503 +
    Retry-After for a request Redis could not serve (down, restarting, pool saturated), or
    whose system-of-record write Kafka did not acknowledge."""

    async def on_redis_unavailable(request: Request, exc: Exception) -> Response:
        note_redis_unavailable(exc)
        return OrjsonResponse({"detail": REDIS_UNAVAILABLE_DETAIL}, status_code=503,
                              headers=REDIS_UNAVAILABLE_HEADERS)

    for unavailable in REDIS_UNAVAILABLE:
        app.add_exception_handler(unavailable, on_redis_unavailable)

    async def on_record_unavailable(request: Request, exc: Exception) -> Response:
        log.warning("503 for %s %s: %s", request.method, request.url.path, exc)
        return OrjsonResponse({"detail": "Kafka could not acknowledge the write (the system of "
                               "record); nothing was changed: retry"}, status_code=503,
                              headers={"Retry-After": "1"})

    app.add_exception_handler(RecordUnavailable, on_record_unavailable)

    async def on_invalid(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        items = [
            {"loc": list(err.get("loc", ())), "msg": err.get("msg", ""), "type": err.get("type")}
            for err in exc.errors()
        ]
        return OrjsonResponse({"detail": items}, status_code=422)

    async def on_client_gone(request: Request, exc: Exception) -> Response:
        client = request.client
        log.info("client %s went away before the body of %s %s arrived",
                 client.host if client else "?", request.method, request.url.path)
        return OrjsonResponse({"detail": "the client closed the connection before the body "
                               "arrived"}, status_code=CLIENT_CLOSED_REQUEST)

    async def on_http_error(request: Request, exc: Exception) -> Response:
        # FastAPI turns a disconnect while it reads a body it validates into a 400 "error
        # parsing the body": it is a client gone like any other
        if isinstance(exc.__cause__, ClientDisconnect):
            return await on_client_gone(request, exc.__cause__)
        assert isinstance(exc, StarletteHTTPException)
        return await http_exception_handler(request, exc)

    app.add_exception_handler(RequestValidationError, on_invalid)
    app.add_exception_handler(ClientDisconnect, on_client_gone)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
