"""Rank changes streamed live: Server-Sent Events and WebSocket, resumable by Kafka position."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Header, HTTPException, Query, Request, WebSocket
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.datastructures import Address, Headers
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from services.api.params import BOARD_PATTERN
from services.api.rank_feed import (
    Change,
    ChangeFilter,
    ChangeRing,
    FeedUnavailable,
    RankChangeFeed,
    ResumeAhead,
    event_id,
    parse_event_id,
)
from services.api.rank_stream import RankStream, StreamLimits
from services.common.http import OrjsonResponse, ip_of
from shared.events import SignificanceLevel

log = logging.getLogger(__name__)
router = APIRouter(tags=["rank changes"])


class StreamFilters(BaseModel):
    """Query parameters of both streams."""

    model_config = ConfigDict(extra="forbid")

    board: str | None = Field(default=None, pattern=BOARD_PATTERN, examples=["text/overall"])
    model: str | None = Field(default=None, max_length=128, examples=["gemini-3-pro"])
    organization: str | None = Field(default=None, max_length=200, examples=["Google"])
    top: int | None = Field(default=None, ge=1, le=10_000,
                            description="Only changes into, out of or within the top N.")
    significance: SignificanceLevel = Field(
        default="any", description="`published`: only moves of the published rank (rank_ub) "
        "and models new on the board; `separated`: those and swaps with a model whose interval "
        "is now apart; `any`: every change, overlapping-interval reorderings and damped repeats "
        "included (the page and `podium tail` ask for `separated`).")
    last_event_id: str | None = Field(
        default=None, description="Resume after this event id (for clients that cannot send "
        "the Last-Event-ID header); the header wins."
    )

    def change_filter(self) -> ChangeFilter:
        return ChangeFilter(self.board, self.model, self.organization, self.top,
                            self.significance)


class StreamSlots:
    """Counts open streams against the configured maximum, in all (503 above) and per client
    address (429 above: one address cannot hold every slot)."""

    def __init__(self, limit: int, per_address: int) -> None:
        self.limit = limit
        self.per_address = per_address
        self.open = 0
        self._by_address: Counter[str] = Counter()

    def refusal(self, address: str) -> HTTPException | None:
        """Why a new stream from ``address`` cannot open now, or None."""
        if self.open >= self.limit:
            return HTTPException(503, f"too many open streams (limit {self.limit}); retry later",
                                 headers={"Retry-After": "5"})
        if self._by_address[address] >= self.per_address:
            return HTTPException(
                429, f"too many open streams from {address} (limit {self.per_address} per "
                "address); close one or retry later", headers={"Retry-After": "5"})
        return None

    @contextlib.contextmanager
    def take(self, address: str) -> Iterator[None]:
        refused = self.refusal(address)
        if refused is not None:
            raise refused
        self.open += 1
        self._by_address[address] += 1
        try:
            yield
        finally:
            self.open -= 1
            self._by_address[address] -= 1
            if not self._by_address[address]:
                del self._by_address[address]


def stream_address(client: Address | None, headers: Headers, trust_forwarded_for: bool) -> str:
    """The address a stream is counted under (``PODIUM_API_TRUST_FORWARDED_FOR``)."""
    return ip_of(client.host if client is not None else None,
                 headers.get("x-forwarded-for", ""), trust_forwarded_for)


async def until_first_done(*work: Awaitable[None]) -> None:
    """Run ``work`` concurrently until one finishes (or fails), then cancel and await the rest."""
    tasks = [asyncio.ensure_future(w) for w in work]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        for outcome in await asyncio.gather(*tasks, return_exceptions=True):
            if isinstance(outcome, Exception) and not isinstance(outcome, OSError):
                log.error("stream ended by an error", exc_info=outcome)


class EventStreamResponse(Response):
    """``text/event-stream`` written by ``produce(write)`` until it ends or the client leaves;
    ``close`` always runs at the end (it releases the stream's slot)."""

    media_type = "text/event-stream"

    def __init__(
        self,
        produce: Callable[[Callable[[bytes], Awaitable[None]]], Awaitable[None]],
        close: Callable[[], Awaitable[Any]],
    ) -> None:
        super().__init__(headers={"cache-control": "no-cache", "x-accel-buffering": "no"})
        self.raw_headers = [(k, v) for k, v in self.raw_headers if k != b"content-length"]
        self._produce = produce
        self._close = close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def write(chunk: bytes) -> None:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})

        async def until_disconnect() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass

        try:
            with contextlib.suppress(OSError):
                await send({"type": "http.response.start", "status": 200,
                            "headers": self.raw_headers})
                await until_first_done(self._produce(write), until_disconnect())
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            await self._close()


def sse_event(event: str, data: bytes, event_id_: str | None = None) -> bytes:
    head = f"id: {event_id_}\n" if event_id_ is not None else ""
    return f"{head}event: {event}\ndata: {data.decode()}\n\n".encode()


class SseSink:
    """A stream's events as Server-Sent Events."""

    def __init__(self, write: Callable[[bytes], Awaitable[None]]) -> None:
        self._write = write

    async def changes(self, changes: list[Change]) -> None:
        await self._write(b"".join(c.sse for c in changes))

    async def heartbeat(self) -> None:
        await self._write(b": heartbeat\n\n")

    async def final(self, kind: str, detail: str, position: str) -> None:
        # a reload moves the client's Last-Event-ID on (an EventSource that ignores the event
        # goes on from there instead of asking again); too-slow leaves it at the last change
        data = orjson.dumps({"detail": detail, "position": position})
        await self._write(sse_event(kind, data, position if kind == "reload" else None))


class WebSocketSink:
    """A stream's events as WebSocket messages."""

    def __init__(self, websocket: WebSocket) -> None:
        self._ws = websocket

    async def changes(self, changes: list[Change]) -> None:
        for c in changes:
            await self._ws.send_text(
                f'{{"type":"rank-change","id":"{event_id(c.offset)}","change":{c.json}}}')

    async def heartbeat(self) -> None:
        await self._ws.send_text('{"type":"heartbeat"}')

    async def final(self, kind: str, detail: str, position: str) -> None:
        await self._ws.send_text(orjson.dumps(
            {"type": kind, "detail": detail, "id": position}).decode())
        await self._ws.close(code=1000 if kind == "reload" else 1013, reason=kind)


def stream_limits(state: Any) -> StreamLimits:
    settings = state.settings
    return StreamLimits(settings.api_heartbeat_s, settings.api_stream_catchup_max_events)


async def open_feed(feed: RankChangeFeed, after: int | None) -> tuple[ChangeRing, int]:
    """The feed's ring and the offset the stream goes on after (FeedUnavailable, ResumeAhead)."""
    ring = await feed.ring()
    if after is None:
        return ring, ring.position - 1
    await feed.check_resume_point(ring, after)
    return ring, after


def _resume_point(header: str | None, query: str | None) -> int | None:
    value = header if header else query
    if value is None:
        return None
    try:
        return parse_event_id(value)
    except ValueError as exc:
        raise HTTPException(400, str(exc)) from exc


@router.get(
    "/v1/events/rank-changes",
    summary="Rank changes as Server-Sent Events",
    description="Each change is an event `rank-change` whose `id` is its Kafka position "
    "(`partition:offset` of the rank-change topic) and whose data is a RankChange. The stream "
    "opens with an event `ready` carrying the current position as its id, and sends a comment "
    "line `: heartbeat` after `PODIUM_API_HEARTBEAT_S` seconds without events. Reconnect with "
    "`Last-Event-ID` (EventSource does it for you) to receive exactly the events missed.",
    responses={
        200: {"content": {"text/event-stream": {"example": (
            "id: 0:41\nevent: rank-change\ndata: {\"board\":\"text/overall\","
            "\"model\":\"glm-4.6\",\"old_rank\":9,\"new_rank\":8,...}\n\n")}},
              "description": "The event stream."},
        400: {"description": "Malformed Last-Event-ID, or one past the end of the stream."},
        429: {"description": "Too many open streams from the client's address."},
        503: {"description": "Kafka unreachable or too many streams."},
    },
)
async def sse_rank_changes(
    request: Request,
    filters: Annotated[StreamFilters, Query()],
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> Response:
    after = _resume_point(last_event_id, filters.last_event_id)
    state = request.app.state
    resources = contextlib.ExitStack()
    try:  # open the feed before answering: "Kafka down" and "too many streams" get real codes
        resources.enter_context(state.stream_slots.take(stream_address(
            request.client, request.headers, state.settings.api_trust_forwarded_for)))
        ring, last = await open_feed(state.feed, after)
    except FeedUnavailable as exc:
        resources.close()
        raise HTTPException(503, str(exc), headers={"Retry-After": "2"}) from exc
    except ResumeAhead as exc:
        resources.close()
        raise HTTPException(400, str(exc)) from exc
    except BaseException:
        resources.close()
        raise

    async def produce(write: Callable[[bytes], Awaitable[None]]) -> None:
        await write(b"retry: 1000\n\n")
        position = event_id(last)
        await write(sse_event("ready", orjson.dumps({"position": position}), position))
        await RankStream(state.feed, ring, last, filters.change_filter(), state.registry,
                         stream_limits(state), SseSink(write)).run()

    async def close() -> None:
        resources.close()

    return EventStreamResponse(produce, close)


@router.websocket("/v1/ws/rank-changes")
async def ws_rank_changes(websocket: WebSocket) -> None:
    """Rank changes over WebSocket: JSON messages ``{"type": "ready", "id"}``,
    ``{"type": "rank-change", "id", "change"}`` and ``{"type": "heartbeat"}``. Query parameters
    as the SSE stream; resume with ``last_event_id``."""
    state = websocket.app.state
    try:
        filters = StreamFilters.model_validate(dict(websocket.query_params))
        after = (None if filters.last_event_id is None
                 else parse_event_id(filters.last_event_id))
    except (ValidationError, ValueError) as exc:  # accepted first, so the client sees why
        await websocket.accept()
        await websocket.close(code=1008, reason=str(exc)[:120])
        return
    slots: StreamSlots = state.stream_slots
    address = stream_address(websocket.client, websocket.headers,
                             state.settings.api_trust_forwarded_for)
    refused = slots.refusal(address)
    if refused is not None and refused.status_code == 429:  # a plain HTTP 429, not a handshake
        await websocket.send_denial_response(OrjsonResponse(
            {"detail": refused.detail}, status_code=429, headers=refused.headers))
        return
    if refused is not None:
        await websocket.accept()
        await websocket.close(code=1013, reason="too many open streams; retry later")
        return
    with slots.take(address):
        try:
            ring, last = await open_feed(state.feed, after)
        except FeedUnavailable:
            await websocket.accept()
            await websocket.close(code=1011, reason="rank-change topic unreachable")
            return
        except ResumeAhead as exc:
            await websocket.accept()
            await websocket.close(code=1008, reason=str(exc)[:120])
            return
        await websocket.accept()
        await websocket.send_text(orjson.dumps({"type": "ready", "id": event_id(last)}).decode())

        async def until_disconnect() -> None:
            while (await websocket.receive())["type"] != "websocket.disconnect":
                pass

        stream = RankStream(state.feed, ring, last, filters.change_filter(), state.registry,
                            stream_limits(state), WebSocketSink(websocket))
        with contextlib.suppress(OSError, RuntimeError):
            await until_first_done(stream.run(), until_disconnect())
