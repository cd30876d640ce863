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


@dataclass(frozen=True, slots=True)
class SseEvent:
    """One dispatched event."""

    event: str
    data: str
    id: str | None = None  # the event's own id field; None when it had none


@dataclass(frozen=True, slots=True)
class SseComment:
    """A comment line (``: heartbeat``), text without the colon and one leading space."""

    text: str


class SseParser:
    """Feed it the stream's text as it arrives (``feed``) or line by line (``feed_line``)."""

    def __init__(self) -> None:
        self.retry_ms: int | None = None
        self._first = True
        self._partial = ""  # the start of a line whose end has not arrived
        self._after_cr = False  # the last piece ended with CR: a LF opening the next is its end
        self._reset()

    def _reset(self) -> None:
        self._event = ""
        self._data: list[str] = []
        self._id: str | None = None

    def feed(self, text: str) -> list[SseEvent | SseComment]:
        """What the complete lines of ``text`` (and the partial line before it) dispatch."""
        if not text:
            return []
        if self._after_cr and text.startswith("\n"):
            text = text[1:]
        self._after_cr = text.endswith("\r")
        *lines, self._partial = _LINE_END.split(self._partial + text)
        items = [self.feed_line(line) for line in lines]
        return [item for item in items if item is not None]

    def feed_line(self, line: str) -> SseEvent | SseComment | None:
        """What one line (without its line ending) completes: an event, a comment, or None."""
        if self._first:
            self._first = False
            line = line.removeprefix("\ufeff")  # a byte order mark before the first line
        if line == "":
            return self._dispatch()
        if line.startswith(":"):
            return SseComment(line[1:].removeprefix(" "))
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id" and "\0" not in value:
            self._id = value
        elif name == "retry" and value.isascii() and value.isdigit():
            self.retry_ms = int(value)
        return None

    def _dispatch(self) -> SseEvent | None:
        event = None
        if self._data:
            event = SseEvent(self._event or "message", "\n".join(self._data), self._id)
        self._reset()
        return event


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
