"""Every use of uvicorn's private API in Podium: the HTTP edge limits, enforced by the server's
protocol before a request reaches the app.

Checked against uvicorn 0.54.0 (``uvicorn/protocols/http/httptools_impl.py``) and httptools
0.9.0. ``tests/unit/test_uvicorn_internals.py`` fails if what is used here moves: the
``HttpToolsProtocol`` methods overridden or called, its per-connection attributes
(``parser``, ``transport``, ``cycle``, ``url``, ``client``, ``loop``), ``RequestResponseCycle``'s
``response_started`` / ``disconnected``, and ``Config(http=<protocol class>)``.

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
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

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
    builds the protocol itself, so the limits are a class attribute of a subclass."""

    limits = EdgeLimits(64 * 1024, 8 * 1024, 30.0)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True  # before the current request's headers are complete
        self._head_bytes = 0
        self._refusal: tuple[HTTPStatus, str] | None = None
        self._deadline: asyncio.TimerHandle | None = None

    # --- connection ---
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()  # a connection that never completes its first request is closed too

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        """uvicorn's ``data_received``, feeding the parser no more of a request's head than the
        limit allows (llhttp would buffer a huge header whole, in quadratic time)."""
        if self._refusal is not None or self.transport.is_closing():
            return
        self._unset_keepalive_if_required()
        try:
            if self._in_head:
                allowed = self.limits.max_header_bytes - self._head_bytes
                self._head_bytes += min(len(data), allowed + 1)
                if allowed > 0:
                    self.parser.feed_data(data[:allowed])
                if self._in_head and len(data) > allowed:
                    self._refuse(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE,
                                 f"request headers over {self.limits.max_header_bytes} bytes")
                    return
                data = data[allowed:]
            if data:
                self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._disarm()  # the WebSocket protocol takes the connection over
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

    # --- parser callbacks ---
    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._deadline is None:
            self._arm()

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        if len(self.url) > self.limits.max_url_bytes:
            self._refusal = (HTTPStatus.REQUEST_URI_TOO_LONG,
                             f"request target over {self.limits.max_url_bytes} bytes")
            raise _Refused

    def on_headers_complete(self) -> None:
        if self.parser.should_upgrade():
            self._refusal = self._handshake_refusal()
            if self._refusal is not None:
                raise _Refused
        self._in_head = False
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._disarm()
        self._in_head = True
        self._head_bytes = 0
        super().on_message_complete()

    # --- the limits ---
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

    def _arm(self) -> None:
        self._deadline = self.loop.call_later(self.limits.request_timeout_s, self._too_slow)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _too_slow(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        cycle = self.cycle
        if cycle is not None and not self._in_head and cycle.response_started:
            self.transport.close()  # the app answered before the body came: just close
            return
        self._refuse(HTTPStatus.REQUEST_TIMEOUT,
                     f"request not complete within {self.limits.request_timeout_s:g} s")

    def _refuse(self, status: HTTPStatus, reason: str) -> None:
        """Answer ``status`` with ``reason``, close the connection, and log it."""
        self._refusal = status, reason
        self._disarm()
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
        self._deadline = self.loop.call_later(LINGER_S, self.transport.close)


def edge_protocol(limits: EdgeLimits) -> type[EdgeProtocol]:
    """The protocol class to give uvicorn (``Config(http=...)``) for these limits."""
    return type("EdgeProtocol", (EdgeProtocol,), {"limits": limits})
