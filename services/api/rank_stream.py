"""One rank-change stream: the changes after its resume point (from a catch-up read, then the
feed's ring), then live, filtered, with heartbeats; ended with a final notice when it cannot
go on (too far behind to catch up, too slow to keep up)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol

from services.api.rank_feed import Change, ChangeFilter, ChangeRing, RankChangeFeed, event_id
from services.common.registry import ModelRegistry


class Sink(Protocol):
    """Where a stream's events go (SSE or WebSocket)."""

    async def changes(self, changes: list[Change]) -> None: ...

    async def heartbeat(self) -> None: ...

    async def final(self, kind: str, detail: str, position: str) -> None:
        """The last event: ``reload`` (resume point too old; ``position`` is where the stream
        would go on) or ``too-slow`` (the client read too slowly and the changes it had not
        been sent left the feed's ring; ``position`` is the last event sent: resume there)."""


@dataclass(frozen=True)
class StreamLimits:
    heartbeat_s: float
    catchup_max_events: int  # an older resume point is refused with ``reload``


WRITE_CHUNK = 500  # changes per write at most: what a stream's socket buffer holds is bounded


class StreamEnded(Exception):
    """The stream sent its final notice."""


class RankStream:
    """The changes of one stream after ``last`` (an offset: every change up to it is done)."""

    def __init__(self, feed: RankChangeFeed, ring: ChangeRing, last: int,
                 filters: ChangeFilter, registry: ModelRegistry, limits: StreamLimits,
                 sink: Sink) -> None:
        self._feed = feed
        self._ring = ring
        self.last = last
        self._filters = filters
        self._registry = registry
        self._limits = limits
        self._sink = sink
        self._organizations: dict[str, str | None] = {}
        self._last_sent = time.monotonic()

    async def run(self) -> None:
        """Until the client leaves (the caller cancels) or a final notice was sent."""
        try:
            if not self._ring.covers(self.last):
                await self._catch_up()
            await self._follow_ring()
        except StreamEnded:
            return

    async def _send(self, changes: list[Change]) -> None:
        wanted = [c for c in changes if c.offset > self.last]
        if not self._filters.matches_all():
            wanted = [c for c in wanted if await self._filters.matches(
                c.change, self._registry, self._organizations)]
        if changes:
            self.last = max(self.last, changes[-1].offset)
        if wanted:
            await self._sink.changes(wanted)
            self._last_sent = time.monotonic()

    async def _end(self, kind: str, detail: str, position: int) -> None:
        await self._sink.final(kind, detail, event_id(position))
        raise StreamEnded

    async def _catch_up(self) -> None:
        """From Kafka, until the ring holds everything after ``last``."""
        behind = self._ring.covered_from - (self.last + 1)
        if behind > self._limits.catchup_max_events:
            await self._too_old(behind)
        read = 0
        async with self._feed.catch_up(self.last) as reader:
            while not self._ring.covers(self.last):
                changes, position = await reader.read()
                await self._send(changes)
                self.last = max(self.last, position - 1)
                read += len(changes)
                if read > self._limits.catchup_max_events + self._ring.capacity:
                    await self._too_old(read)  # chasing a ring that moves faster than it reads

    async def _too_old(self, behind: int) -> None:
        await self._end("reload", f"the resume point is more than {behind} events behind "
                        f"(at most {self._limits.catchup_max_events} are replayed): reload the "
                        "standings and go on from this event's id", self._ring.position - 1)

    async def _follow_ring(self) -> None:
        ring = self._ring
        cursor = ring.cursor_after(self.last)
        chunk = min(WRITE_CHUNK, ring.capacity)
        while not ring.ended:
            if cursor < ring.first:  # what it has not been sent yet has left the ring
                await self._end("too-slow", f"this stream fell more than {ring.capacity} "
                                "events behind; resume from the last event id received",
                                self.last)
            changes, cursor = ring.since(cursor, chunk)
            await self._send(changes)
            quiet = time.monotonic() - self._last_sent
            if quiet >= self._limits.heartbeat_s:
                await self._sink.heartbeat()
                self._last_sent = time.monotonic()
                quiet = 0.0
            await ring.wait_past(cursor, self._limits.heartbeat_s - quiet)
