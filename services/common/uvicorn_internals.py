"""Every use of uvicorn's private API in Podium: the HTTP edge limits, enforced by the server's
protocol before a request reaches the app.

Checked against uvicorn 0.54.0 (``uvicorn/protocols/http/httptools_impl.py``) and httptools
0.9.0. ``tests/unit/test_uvicorn_internals.py`` fails if what is used here moves: the
``HttpToolsProtocol`` methods overridden or called, its per-connection attributes
(``parser``, ``transport``, ``cycle``, ``url``, ``client``, ``loop``), ``RequestResponseCycle``'s
``response_started`` / ``disconnected``, and ``Config(http=<protocol class>)``; for
``write_would_wait`` (ingest's single-vote route), that a response's ``send`` is a bound method
of the ``RequestResponseCycle``, whose ``flow.write_paused`` and ``transport`` it reads.

httptools (llhttp) has no limit of its own on a request's head, and uvicorn none on the time a
request may take to arrive. ``EdgeProtocol`` adds three limits:

- the request head (request line and headers) is at most ``max_header_bytes``: above it, 431;
- the request target (path and query) is at most ``max_url_bytes``: above it, 414 (a WebSocket
  upgrade too, before the handshake is handed over);
- a request's head and body arrive within ``request_timeout_s`` of its first byte (of the
  connection, for the first request): else 408.

A WebSocket upgrade is also held to the limits of the handshake parser it is handed to
(websockets 17.4, ``websockets.http11``: a line of at most ``MAX_LINE_LENGTH`` bytes, at most
``MAX_NUM_HEADERS`` headers): past them that parser never answers and the client hangs until
it gives up, so such an upgrade is refused here, 414 or 431.

Each refusal is written straight to the socket with ``Connection: close``, the connection is
closed (after a short lingering read, so the client gets the answer), and it is logged at INFO.
A request the app already works on (its body late) is seen by the app as a client disconnect.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, ClassVar

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from websockets.http11 import MAX_LINE_LENGTH, MAX_NUM_HEADERS

log = logging.getLogger(__name__)

UVICORN_CHECKED = "0.54.0"
WEBSOCKETS_CHECKED = "17.4"
# how long a refused connection is read (and dropped) before it is closed
LINGER_S = 2.0


@dataclass(frozen=True, slots=True)
class EdgeLimits:
    """The limits of the HTTP edge (settings ``PODIUM_HTTP_*``)."""

    max_header_bytes: int
    max_url_bytes: int
    request_timeout_s: float


class _Refused(Exception):
    """Raised from a parser callback to stop parsing a request that is over a limit."""


class EdgeProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the edge limits. Use ``edge_protocol(limits)``: uvicorn
    builds the protocol itself, so the limits are class attributes of a subclass.

    Kept cheap per request (a vote POST is tens of microseconds): no timer per request, but the
    time its first byte came (``_began``), checked by one sweep per event loop (``_Sweeper``)."""

    limits = EdgeLimits(64 * 1024, 8 * 1024, 30.0)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True  # before the current request's headers are complete
        self._head_bytes = 0
        self._began: float | None = None  # when the pending request's first byte came
        self._refusal: tuple[HTTPStatus, str] | None = None
        self._linger: asyncio.TimerHandle | None = None

    # --- connection ---
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._began = self.loop.time()  # a connection that never completes a request is closed
        _Sweeper.watch(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._began = None
        _Sweeper.forget(self)
        if self._linger is not None:
            self._linger.cancel()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        """uvicorn's ``data_received``, feeding the parser no more of a request's head than the
        limit allows (llhttp would buffer a huge header whole, in quadratic time)."""
        if self._refusal is not None:  # answered and closing: what still comes is dropped
            return
        self._unset_keepalive_if_required()
        if self._began is None:
            self._began = self.loop.time()
        try:
            if self._in_head:
                if self._head_bytes + len(data) > self.limits.max_header_bytes:
                    self._feed_head_to_the_limit(data)
                    return
                self._head_bytes += len(data)
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._began = None  # the WebSocket protocol takes the connection over
            _Sweeper.forget(self)
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
        except httptools.HttpParserError:
            if self._refusal is not None:  # raised by a callback below
                self._refuse(*self._refusal)
                return
            msg = "Invalid HTTP request received."
            self.logger.warning(msg)
            self.send_400_response(msg)

    def _feed_head_to_the_limit(self, data: bytes) -> None:
        """Feed what the head limit allows of ``data``; refuse if the head is not complete by
        then (431, or 414 when the request target alone is over its limit), else feed on."""
        allowed = self.limits.max_header_bytes - self._head_bytes
        self._head_bytes = self.limits.max_header_bytes
        if allowed > 0:
            self.parser.feed_data(data[:allowed])
        if not self._in_head:
            if len(data) > allowed:
                self.parser.feed_data(data[allowed:])
        elif len(self.url) > self.limits.max_url_bytes:
            self._refuse(HTTPStatus.REQUEST_URI_TOO_LONG,
                         f"request target over {self.limits.max_url_bytes} bytes")
        else:
            self._refuse(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE,
                         f"request headers over {self.limits.max_header_bytes} bytes")

    # --- parser callbacks ---
    def on_headers_complete(self) -> None:
        if len(self.url) > self.limits.max_url_bytes:
            raise self._refused(HTTPStatus.REQUEST_URI_TOO_LONG,
                                f"request target over {self.limits.max_url_bytes} bytes")
        if self.parser.should_upgrade():
            self._refusal = self._handshake_refusal()
            if self._refusal is not None:
                raise _Refused
        self._in_head = False
        HttpToolsProtocol.on_headers_complete(self)

    def on_message_complete(self) -> None:
        self._began = None
        self._in_head = True
        self._head_bytes = 0
        HttpToolsProtocol.on_message_complete(self)

    # --- the limits ---
    def _refused(self, status: HTTPStatus, reason: str) -> _Refused:
        """Remember why the request is refused; the exception stops the parser (the refusal is
        answered where the parser's error is caught)."""
        self._refusal = status, reason
        return _Refused()

    def _handshake_refusal(self) -> tuple[HTTPStatus, str] | None:
        """Why the WebSocket handshake parser would choke on this upgrade (see above), or None:
        the request line and each header line as uvicorn hands them over."""
        method = self.parser.get_method()
        most = MAX_LINE_LENGTH - len(method) - len(b"  HTTP/1.1\r\n")
        if len(self.url) > most:
            return HTTPStatus.REQUEST_URI_TOO_LONG, f"request target over {most} bytes"
        if len(self.headers) > MAX_NUM_HEADERS:
            return (HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE,
                    f"more than {MAX_NUM_HEADERS} headers in a WebSocket upgrade")
        if any(len(name) + len(value) + 4 > MAX_LINE_LENGTH for name, value in self.headers):
            return (HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE,
                    f"a header line over {MAX_LINE_LENGTH} bytes in a WebSocket upgrade")
        return None

    def overdue(self, now: float) -> bool:
        """Whether the pending request (or the connection's first) is past its deadline."""
        return (self._began is not None and self._refusal is None
                and now - self._began > self.limits.request_timeout_s)

    def too_slow(self) -> None:
        """The deadline passed: 408, or just close if the app answered before the body came."""
        self._began = None
        if self.transport.is_closing():
            return
        cycle = self.cycle
        if cycle is not None and not self._in_head and cycle.response_started:
            self.transport.close()
            return
        self._refuse(HTTPStatus.REQUEST_TIMEOUT,
                     f"request not complete within {self.limits.request_timeout_s:g} s")

    def _refuse(self, status: HTTPStatus, reason: str) -> None:
        """Answer ``status`` with ``reason``, close the connection, and log it."""
        self._refusal = status, reason
        self._began = None
        cycle = self.cycle
        if cycle is not None and not self._in_head:  # the app has the request: it may not write
            cycle.disconnected = True
            cycle.message_event.set()
        body = f'{{"detail":"{reason}"}}'.encode()
        head = (f"HTTP/1.1 {status.value} {status.phrase}\r\n"
                "content-type: application/json\r\n"
                f"content-length: {len(body)}\r\n"
                "connection: close\r\n\r\n").encode()
        self.transport.write(head + body)
        self._close_lingering()
        host = self.client[0] if self.client else "?"
        log.info("refused a request from %s: %s (%d)", host, reason, status.value)

    def _close_lingering(self) -> None:
        """Close after the answer, reading (and dropping) what the client still sends for a
        moment: closing with unread data would reset the connection, and the client would
        lose the answer while it is still sending (a huge header)."""
        if not self.transport.can_write_eof():
            self.transport.close()
            return
        self.transport.write_eof()
        self._linger = self.loop.call_later(LINGER_S, self.transport.close)


class _Sweeper:
    """Once a second (or a quarter of the timeout, if shorter) per event loop, refuses the
    requests past their deadline. Runs while the loop has connections to watch (from
    ``connection_made`` to ``connection_lost`` or a WebSocket upgrade)."""

    _watched: ClassVar[dict[asyncio.AbstractEventLoop, set[EdgeProtocol]]] = {}

    @classmethod
    def watch(cls, protocol: EdgeProtocol) -> None:
        loop = protocol.loop
        watched = cls._watched.get(loop)
        if watched is None:
            watched = cls._watched[loop] = set()
            interval = min(1.0, protocol.limits.request_timeout_s / 4)
            loop.call_later(interval, cls._sweep, loop, interval)
        watched.add(protocol)

    @classmethod
    def forget(cls, protocol: EdgeProtocol) -> None:
        watched = cls._watched.get(protocol.loop)
        if watched is not None:
            watched.discard(protocol)

    @classmethod
    def _sweep(cls, loop: asyncio.AbstractEventLoop, interval: float) -> None:
        watched = cls._watched[loop]
        now = loop.time()
        for protocol in [p for p in watched if p.overdue(now)]:
            protocol.too_slow()
        if watched:
            loop.call_later(interval, cls._sweep, loop, interval)
        else:
            del cls._watched[loop]


def write_would_wait(send: Callable[..., Any], max_buffered: int) -> bool:
    """Whether uvicorn's ``send`` of a response may wait: it waits only while the connection's
    transport is paused (``cycle.flow.write_paused``: a client reading its answers slower than
    they come); more than ``max_buffered`` bytes unsent counts as about to. True on another
    server (no such state to see): the caller then writes where waiting costs nobody else."""
    cycle = getattr(send, "__self__", None)
    flow = getattr(cycle, "flow", None)
    transport = getattr(cycle, "transport", None)
    return (flow is None or transport is None or getattr(flow, "write_paused", True)
            or transport.get_write_buffer_size() > max_buffered)


def edge_protocol(limits: EdgeLimits) -> type[EdgeProtocol]:
    """The protocol class to give uvicorn (``Config(http=...)``) for these limits."""
    return type("EdgeProtocol", (EdgeProtocol,), {"limits": limits})
