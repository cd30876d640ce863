"""Where the rating worker resumes a votes partition: from what Redis says was applied, not from
Kafka's committed offset (docs/decisions.md, "The worker's position lives with its output").

Each arena's fence hash holds, per ``topic/partition``, the last offset applied to it, written
in the same atomic step as the counts. A partition carries several arenas, so the worker also
records which arenas it applied from each partition (``KeyLayout.partition_arenas``, a set
written before an arena's first apply, in the same round trip that reads the batch's fences).
The partition resumes at the lowest fence + 1 of those arenas: everything below is applied for
every arena of the partition. No arena recorded, or one recorded without a fence (Redis lost
it): offset 0, a rebuild of the partition from the log (the fences skip what is still there).

``Rewinds`` drops what faust had already fetched past a rewind (it must not be applied before
the offsets the rewind re-reads) and measures the catch-up that follows.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from faust.types import TP

from services.common.redis_client import REDIS_RETRYABLE, RedisClient
from services.rating.arena_slices import RawRecord
from shared.generations import read_generations
from shared.keys import KeyLayout, text

log = logging.getLogger(__name__)


class StateLost(Exception):
    """Redis holds less than this worker applied (a fence went back or vanished)."""

    def __init__(self, fields: Iterable[str]) -> None:
        self.fields = sorted(set(fields))
        super().__init__(f"Redis lost applied votes of {', '.join(self.fields)}")


Fences = dict[tuple[str, str], int]  # (arena, fence field) -> offset


def resume_offset(fences: Sequence[int | None]) -> int:
    """The offset a partition resumes at, from what each arena recorded for it holds (its fence
    or ``through`` mark, whichever is higher; None: recorded but neither is there): the lowest
    + 1; 0 when no arena is recorded or one has lost both."""
    if not fences or any(f is None for f in fences):
        return 0
    return min(f for f in fences if f is not None) + 1


@dataclass(frozen=True)
class Positions:
    """Where each partition resumes, and what Redis holds of its arenas."""

    offsets: dict[int, int]  # partition -> resume offset
    fences: Fences  # (arena, field) -> fence, of the arenas that have one
    through: Fences  # (arena, field) -> through mark, where there is one


async def resume_offsets(
    client: RedisClient, base: KeyLayout, topic: str, partitions: Iterable[int]
) -> Positions:
    """Where each partition resumes: after what Redis says was applied of it (live
    generation)."""
    parts = sorted(set(partitions))
    if not parts:
        return Positions({}, {}, {})
    live = (await read_generations(client, base)).active
    async with client.pipeline(transaction=False) as pipe:
        for p in parts:
            pipe.smembers(base.partition_arenas(topic, p))
        members = await pipe.execute()
    arenas = {p: sorted(text(a) for a in found) for p, found in zip(parts, members, strict=True)}
    async with client.pipeline(transaction=False) as pipe:
        for p in parts:
            for arena in arenas[p]:
                pipe.hget(live.fence(arena), f"{topic}/{p}")
                pipe.hget(live.through(arena), f"{topic}/{p}")
        raw = iter(await pipe.execute())
    out = Positions({}, {}, {})
    for p in parts:
        field = f"{topic}/{p}"
        held: list[int | None] = []
        for arena in arenas[p]:
            fence, through = next(raw), next(raw)
            if fence is not None:
                out.fences[(arena, field)] = int(fence)
            if through is not None:
                out.through[(arena, field)] = int(through)
            marks = [int(m) for m in (fence, through) if m is not None]
            held.append(max(marks) if marks else None)
        out.offsets[p] = resume_offset(held)
    return out


async def write_through(client: RedisClient, live: KeyLayout, marks: Fences) -> None:
    """Record, per (arena, field), the offset through which the partition was processed."""
    if not marks:
        return
    async with client.pipeline(transaction=False) as pipe:
        for (arena, field), offset in sorted(marks.items()):
            pipe.hset(live.through(arena), field, offset)
        await pipe.execute()


@dataclass
class CatchUp:
    """A rewound partition on its way back to where the worker had been."""

    start: int  # the offset it was rewound to
    target: int  # the highest offset seen before the rewind
    done: int  # the highest offset processed since

    @property
    def remaining(self) -> int:
        return max(0, self.target - self.done)


class Rewinds:
    """Per votes partition: the highest offset delivered to the worker, and the rewinds under
    way. After a rewind to offset R, records of the partition are dropped until R itself comes
    (what faust had fetched before the seek); from there they are processed in order."""

    def __init__(self) -> None:
        self._seen: dict[int, int] = {}
        self._awaiting: dict[int, int] = {}  # partition -> offset the rewind starts at
        self.catching_up: dict[int, CatchUp] = {}
        # partition -> its catch-up, read to the end but not yet applied and refitted
        self.unapplied: dict[int, CatchUp] = {}
        self._last_progress_log = 0.0

    def rewound(self, partition: int, offset: int, target: int | None = None) -> bool:
        """The partition was sought to ``offset``; ``target``: where the worker had been (by
        default the highest offset delivered). Returns True if that re-reads offsets."""
        self._awaiting[partition] = offset
        self.unapplied.pop(partition, None)
        seen = max(self.seen(partition), -1 if target is None else target)
        under_way = self.catching_up.get(partition)
        if under_way is not None:  # rewound again before it had caught up
            seen = max(seen, under_way.target)
        if offset <= seen:
            self.catching_up[partition] = CatchUp(offset, seen, offset - 1)
            return True
        self.catching_up.pop(partition, None)
        return False

    def seen(self, partition: int) -> int:
        """The highest offset of the partition delivered (-1: none)."""
        return self._seen.get(partition, -1)

    def revoked(self, partitions: Iterable[int]) -> None:
        for p in partitions:
            self._awaiting.pop(p, None)
            self.catching_up.pop(p, None)
            self.unapplied.pop(p, None)

    def admit(self, records: Sequence[RawRecord], topic: str) -> list[RawRecord]:
        """The records to process, in order: those fetched before a rewind are dropped."""
        if not self._awaiting and not self.catching_up:
            for r in records:
                if r.topic == topic and r.offset > self._seen.get(r.partition, -1):
                    self._seen[r.partition] = r.offset
            return list(records)
        out: list[RawRecord] = []
        for r in records:
            if r.topic != topic:
                out.append(r)
                continue
            p = r.partition
            start = self._awaiting.get(p)
            if start is not None:
                if r.offset != start:
                    continue
                del self._awaiting[p]
            out.append(r)
            if r.offset > self._seen.get(p, -1):
                self._seen[p] = r.offset
            progress = self.catching_up.get(p)
            if progress is not None:
                progress.done = max(progress.done, r.offset)
                if progress.remaining == 0:
                    del self.catching_up[p]
                    self.unapplied[p] = progress
                    log.info("partition %d read up to offset %d", p, progress.target)
        return out

    def applied(self, records: Sequence[RawRecord], topic: str) -> None:
        """A batch of admitted records is applied and its boards refitted: a partition whose
        catch-up it ends is caught up."""
        if not self.unapplied:
            return
        for r in records:
            catch_up = self.unapplied.get(r.partition)
            if r.topic == topic and catch_up is not None and r.offset >= catch_up.target:
                del self.unapplied[r.partition]
                log.info("partition %d caught up at offset %d (applied, boards refitted)",
                         r.partition, catch_up.target)

    def pending(self) -> dict[str, dict[str, int]] | None:
        """``status``, with the partitions read to the end of their catch-up whose last batch
        is not yet applied and refitted (remaining 0): None once every catch-up is applied."""
        status = self.status() or {}
        for p, c in sorted(self.unapplied.items()):
            total = c.target - c.start + 1
            status.setdefault(str(p), {"done": total, "total": total, "remaining": 0})
        return status or None

    def status(self) -> dict[str, dict[str, int]] | None:
        """Progress of the catch-ups under way (None if none): per partition, offsets done of
        total and remaining."""
        if not self.catching_up:
            return None
        return {str(p): {"done": max(0, c.done - c.start + 1), "total": c.target - c.start + 1,
                         "remaining": c.remaining}
                for p, c in sorted(self.catching_up.items())}

    def remaining(self) -> int:
        return sum(c.remaining for c in self.catching_up.values())

    def log_progress(self, every_s: float, now: float | None = None) -> None:
        """Log the catch-up's progress, at most every ``every_s`` seconds."""
        now = time.monotonic() if now is None else now
        status = self.status()
        if status is None or now - self._last_progress_log < every_s:
            return
        self._last_progress_log = now
        done = sum(s["done"] for s in status.values())
        total = sum(s["total"] for s in status.values())
        log.info("catching up from the log: %d of %d offsets re-read (%s)", done, total,
                 ", ".join(f"p{p} {s['done']}/{s['total']}" for p, s in status.items()))


def partitions_of(fields: Iterable[str], topic: str) -> set[int]:
    """The partitions of ``topic`` among fence fields (``topic/partition``)."""
    out = set()
    for field in fields:
        name, _, number = field.rpartition("/")
        if name == topic and number.isdigit():
            out.add(int(number))
    return out


def committed_targets(committed: Mapping[int, int | None]) -> dict[int, int]:
    """partition -> the last offset the group had committed as processed (committed - 1)."""
    return {p: c - 1 for p, c in committed.items() if c is not None and c > 0}


RESUME_RETRY_S = 60.0
LOCK_WAIT_S = 20.0


class Resumer:
    """The worker's ``Positioner`` (services/rating/kafka_consumer.py): on every assignment, and
    when the processor finds that Redis lost applied votes, each assigned votes partition
    resumes after what Redis holds of it. ``on_reposition`` callbacks (the processor's cache
    drop) run after each positioning."""

    def __init__(self, client: Callable[[], RedisClient], base: KeyLayout, topic: str,
                 metrics: ResumeObserver | None = None) -> None:
        self._client = client
        self._base = base
        self._topic = topic
        self._metrics = metrics
        self.rewinds = Rewinds()
        self.assigned: set[int] = set()
        self.on_reposition: list[Callable[[Positions], None]] = []
        self._reason = "assignment"
        # the processor's lock: positioning waits for the batch in flight (which would
        # otherwise apply records fetched before the seek after it); not taken when the
        # processor itself rewinds, holding it
        self.lock: asyncio.Lock | None = None
        self._inside = False

    async def positions(
        self, assigned: set[TP], committed: Mapping[TP, int | None], earliest: Mapping[TP, int]
    ) -> dict[TP, int]:
        if self.lock is None or self._inside:
            return await self._positions(assigned, committed, earliest)
        try:
            await asyncio.wait_for(self.lock.acquire(), LOCK_WAIT_S)
        except TimeoutError:  # a batch that does not end must not hold the group up for good
            log.warning("the batch in flight did not end within %.0fs; positioning anyway",
                        LOCK_WAIT_S)
            return await self._positions(assigned, committed, earliest)
        try:
            return await self._positions(assigned, committed, earliest)
        finally:
            self.lock.release()

    async def _positions(
        self, assigned: set[TP], committed: Mapping[TP, int | None], earliest: Mapping[TP, int]
    ) -> dict[TP, int]:
        votes = {tp for tp in assigned if tp.topic == self._topic}
        partitions = {tp.partition for tp in votes}
        self.rewinds.revoked(self.assigned - partitions)
        self.assigned = partitions
        found = await self._resume_offsets(partitions)
        out: dict[TP, int] = {}
        for tp in sorted(votes):
            p = tp.partition
            offset = max(found.offsets[p], earliest.get(tp, 0))
            done = committed.get(tp)
            target = max(-1 if done is None else done - 1, self.rewinds.seen(p))
            if self.rewinds.rewound(p, offset, target):
                self._observe(p, offset, target)
            out[tp] = offset
        for callback in self.on_reposition:
            callback(found)
        return out

    async def reposition(self, app: Any, lost: StateLost) -> None:
        """Redis lost applied votes: rewind every assigned votes partition (``app``: the
        worker's ``kafka_consumer.App``)."""
        log.warning("%s; rewinding partitions %s to what Redis holds", lost,
                    sorted(self.assigned) or "(none assigned)")
        self._reason, self._inside = "state_lost", True
        try:
            await app.reposition()
        finally:
            self._reason, self._inside = "assignment", False

    def _observe(self, partition: int, offset: int, target: int) -> None:
        level = logging.WARNING if self._reason == "state_lost" else logging.INFO
        log.log(level, "partition %d resumes at offset %d from Redis's fences (%s); "
                "%d offsets to re-read up to %d", partition, offset, self._reason,
                target - offset + 1, target)
        if self._metrics is not None:
            self._metrics.observe_resume(self._reason)

    async def _resume_offsets(self, partitions: set[int]) -> Positions:
        """``resume_offsets``, retried while Redis is unreachable (for up to a minute)."""
        deadline = time.monotonic() + RESUME_RETRY_S
        delay = 0.2
        while True:
            try:
                return await resume_offsets(self._client(), self._base, self._topic, partitions)
            except REDIS_RETRYABLE as exc:
                if time.monotonic() > deadline:
                    raise
                log.warning("cannot read the fences to resume from (%s); retrying", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)


class ResumeObserver(Protocol):
    def observe_resume(self, reason: str) -> None: ...
