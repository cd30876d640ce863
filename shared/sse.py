"""Parsing a ``text/event-stream`` (Server-Sent Events, WHATWG HTML "9.2 Server-sent events"):
the one parser of the project, used by the client (``shared/client.py``) and by the tests.

Text goes in, in pieces of any size; lines end with CRLF, LF or CR and nothing else (not
``str.splitlines``'s other separators, which JSON may carry raw). An event is dispatched at a
blank line. Fields: ``data`` (several lines are joined with ``\\n``), ``event`` (the type,
``message`` when absent), ``id`` (this event's id; the stream's last event id is the latest one
seen, which the caller keeps), ``retry`` (the reconnection time in ms, kept on the parser;
digits only, else ignored). A line starting with ``:`` is a comment. An event without data is
not dispatched; an event left unfinished when the stream ends is dropped. Unknown fields are
ignored.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass

_LINE_END = re.compile("\r\n|\r|\n")


@dataclass(slots=True)
class SseEvent:
    """One dispatched event."""

    event: str
    data: str
    id: str | None = None  # the event's own id field; None when it had none


@dataclass(slots=True)
class SseComment:
    """A comment line (``: heartbeat``), text without the colon and one leading space."""

    text: str


class SseParser:
    """Feed it the stream's text as it arrives (``feed``) or line by line (``feed_line``).

    One loop over a piece's lines with the state in locals: the fan-out benchmark reads
    thousands of streams in one process, so this is on its measuring path."""

    def __init__(self) -> None:
        self.retry_ms: int | None = None
        self._first = True  # a byte order mark may open the stream
        self._partial = ""  # the start of a line whose end has not arrived
        self._after_cr = False  # the last piece ended with CR: a LF opening the next is its end
        self._event = ""
        self._data: list[str] = []
        self._id: str | None = None

    def feed(self, text: str) -> list[SseEvent | SseComment]:
        """What the complete lines of ``text`` (and the partial line before it) dispatch."""
        if not text:
            return []
        if self._first:
            self._first = False
            text = text.removeprefix("\ufeff")
        if self._after_cr and text.startswith("\n"):
            text = text[1:]
        self._after_cr = text.endswith("\r")
        text = self._partial + text
        lines = _LINE_END.split(text) if "\r" in text else text.split("\n")
        self._partial = lines.pop()
        return self._lines(lines)

    def feed_line(self, line: str) -> SseEvent | SseComment | None:
        """What one line (without its line ending) completes: an event, a comment, or None."""
        if self._first:
            self._first = False
            line = line.removeprefix("\ufeff")
        items = self._lines([line])
        return items[0] if items else None

    def _lines(self, lines: list[str]) -> list[SseEvent | SseComment]:
        out: list[SseEvent | SseComment] = []
        event, data, event_id = self._event, self._data, self._id
        for line in lines:
            if not line:  # dispatch
                if data:
                    out.append(SseEvent(event or "message", "\n".join(data), event_id))
                event, data, event_id = "", [], None
                continue
            name, _, value = line.partition(":")
            if not name:
                out.append(SseComment(value[1:] if value[:1] == " " else value))
                continue
            if value[:1] == " ":
                value = value[1:]
            if name == "data":
                data.append(value)
            elif name == "event":
                event = value
            elif name == "id":
                if "\0" not in value:
                    event_id = value
            elif name == "retry" and value.isascii() and value.isdigit():
                self.retry_ms = int(value)
        self._event, self._data, self._id = event, data, event_id
        return out


async def sse_stream(text: AsyncIterable[str]) -> AsyncIterator[SseEvent | SseComment]:
    """Events and comments of a stream's text (e.g. ``httpx.Response.aiter_text()``)."""
    parser = SseParser()
    async for piece in text:
        for item in parser.feed(piece):
            yield item


async def sse_events(text: AsyncIterable[str]) -> AsyncIterator[SseEvent]:
    """The events of a stream's text; comments are skipped."""
    async for item in sse_stream(text):
        if isinstance(item, SseEvent):
            yield item
