"""A minimal Server-Sent Events reader over an httpx streaming response."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx


@dataclass(frozen=True)
class SseEvent:
    event: str  # "message", a named event, or "comment" for ": ..." lines
    data: str
    id: str | None


async def sse_events(response: httpx.Response) -> AsyncIterator[SseEvent]:
    event, data, event_id = "message", [], None
    async for line in response.aiter_lines():
        if line == "":
            if data:
                yield SseEvent(event, "\n".join(data), event_id)
            event, data, event_id = "message", [], None
        elif line.startswith(":"):
            yield SseEvent("comment", line[1:].strip(), None)
        else:
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "event":
                event = value
            elif name == "data":
                data.append(value)
            elif name == "id":
                event_id = value


async def next_event(events: AsyncIterator[SseEvent], timeout: float,
                     kinds: tuple[str, ...] = ("rank-change",)) -> SseEvent:
    """The next event of one of ``kinds`` (others are skipped), or AssertionError after timeout."""
    async def find() -> SseEvent:
        async for ev in events:
            if ev.event in kinds:
                return ev
        raise AssertionError("the stream ended")

    try:
        return await asyncio.wait_for(find(), timeout)
    except TimeoutError:
        raise AssertionError(f"no {kinds} event within {timeout}s") from None
