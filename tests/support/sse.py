"""Reading a rank-change stream in tests, with the project's one SSE parser (``shared/sse.py``)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import httpx

from shared.sse import SseComment, SseEvent, sse_stream

Item = SseEvent | SseComment


def sse_items(response: httpx.Response) -> AsyncIterator[Item]:
    """The events and comments of a streaming response, as they arrive."""
    return sse_stream(response.aiter_text())


async def _next(items: AsyncIterator[Item], timeout: float, wanted: Callable[[Item], bool],
                what: str) -> Item:
    async def find() -> Item:
        async for item in items:
            if wanted(item):
                return item
        raise AssertionError("the stream ended")

    try:
        return await asyncio.wait_for(find(), timeout)
    except TimeoutError:
        raise AssertionError(f"no {what} within {timeout}s") from None


async def next_event(items: AsyncIterator[Item], timeout: float,
                     kinds: tuple[str, ...] = ("rank-change",)) -> SseEvent:
    """The next event of one of ``kinds`` (others and comments are skipped), or AssertionError
    after ``timeout``."""
    item = await _next(items, timeout, lambda i: isinstance(i, SseEvent) and i.event in kinds,
                       f"{kinds} event")
    assert isinstance(item, SseEvent)
    return item


async def next_event_or_comment(items: AsyncIterator[Item], timeout: float,
                                kinds: tuple[str, ...] = ("rank-change",)) -> Item:
    """The next comment or event of one of ``kinds`` (other events are skipped)."""
    return await _next(items, timeout,
                       lambda i: isinstance(i, SseComment) or i.event in kinds,
                       f"comment or {kinds} event")
