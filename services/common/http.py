"""ASGI pieces shared by the HTTP services: a request-body limit, validation-error bodies, the
client address, and clients that go away mid-body."""

from __future__ import annotations

import logging
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)

# The status a request is counted under when its client went away before its body arrived
# (nginx's "client closed request"): nobody reads the answer, the metrics see it.
CLIENT_CLOSED_REQUEST = 499


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


def error_items(exc: ValidationError, prefix: tuple[str | int, ...] = ()) -> list[dict[str, Any]]:
    """Pydantic errors as small JSON-ready items: where, what, and which rule."""
    return [
        {"loc": [*prefix, *err["loc"]], "msg": err["msg"], "type": err["type"]}
        for err in exc.errors(include_url=False, include_input=False)
    ]


class OrjsonResponse(Response):
    """JSON via orjson (numpy-free, fast); FastAPI's ORJSONResponse is deprecated."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def install_error_handlers(app: FastAPI) -> None:
    """422 bodies in one shape everywhere: ``{"detail": [{"loc", "msg", "type"}, ...]}``; a
    client gone before its body arrived: logged at INFO, answered (and counted) 499."""

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
