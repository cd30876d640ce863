"""Rendered board responses, kept until the board changes, so a board read that hits costs no
Redis round trip and no JSON work.

Invalidation is pushed: every writer of a standings document (the rating service) or of the
registry, and a rebuild's switch of generations, publishes on ``KeyLayout.board_changes()``
(``arena/view``, or ``*`` for every board) right after its write, and ``BoardChanges`` (a task
of the api) drops the cached responses it names. A subscriber does not see what was published
while it was not subscribed, so every (re)subscription drops everything.

Staleness bound (how old a served board can be, behind what Redis holds):

- subscription up: a change is served from the first read after its message is handled (a few
  milliseconds); a change nobody announced (a writer that does not publish, a hand edit) or one
  lost with a connection that died silently is served within ``recheck_s`` (1 s by default):
  a cached response is re-checked against Redis (two GETs and a comparison) at that age;
- subscription down (no message or pong heard for ``LIVE_S``, at most 1 s after it died): reads
  fall back to polling, a response is reused for ``fresh_s`` (50 ms by default) and then
  re-checked.

Re-checks and renders are single-flight per response: readers arriving while one is under way
wait for it rather than each asking Redis.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

import orjson
from redis.asyncio.client import PubSub
from redis.asyncio.cluster import RedisCluster

from services.api.rows import ListingPolicy, labelled
from services.api.standings import StandingsReader
from services.common.redis_client import RedisClient
from services.common.registry import ModelRegistry
from shared.keys import ALL_BOARDS, split_board, text

log = logging.getLogger(__name__)

PING_S = 0.25  # the subscriber pings when nothing was heard for this long
LIVE_S = 1.0  # pushed invalidation is trusted while something was heard this recently

Epoch = tuple[int, int]  # (invalidations of every board, invalidations of this board)
Render = Callable[[dict[str, Any]], dict[str, Any]]


@dataclass
class RenderedBoard:
    raw: bytes  # the standings document as the rating service wrote it
    registry_version: int
    body: bytes  # the response made from them
    headers: list[tuple[bytes, bytes]]  # the response's headers (read-only: shared by sends)
    checked: float  # monotonic time the Redis read that confirmed ``raw`` started
    epoch: Epoch  # the invalidations that read came after


def json_headers(body: bytes) -> list[tuple[bytes, bytes]]:
    """The headers Starlette's ``Response(body, media_type="application/json")`` sends."""
    return [(b"content-length", str(len(body)).encode()), (b"content-type", b"application/json")]


class RenderedBoards:
    """Responses of board reads by (arena, view, variant); see the module's staleness bound."""

    def __init__(self, size: int = 512, fresh_s: float = 0.05, recheck_s: float = 1.0,
                 clock: Callable[[], float] = time.monotonic,
                 policy: ListingPolicy | None = None) -> None:
        self._size = size
        self._policy = policy or ListingPolicy()
        self._fresh_s = fresh_s
        self._recheck_s = max(recheck_s, fresh_s)
        self._clock = clock
        self._entries: OrderedDict[Hashable, RenderedBoard] = OrderedDict()
        self._everything = 0
        self._boards: dict[tuple[str, str], int] = {}
        self._loading: dict[Hashable, tuple[Epoch, asyncio.Future[RenderedBoard | None]]] = {}
        self._live_until = 0.0

    # -- invalidation (called by BoardChanges) --

    def invalidate(self, arena: str, view: str) -> None:
        board = (arena, view)
        self._boards[board] = self._boards.get(board, 0) + 1

    def invalidate_all(self) -> None:
        self._everything += 1

    def heard(self) -> None:
        """The subscription is alive: trust pushed invalidation for ``LIVE_S``."""
        self._live_until = self._clock() + LIVE_S

    def lost(self) -> None:
        """The subscription is down: poll (``fresh_s``) until it is back."""
        self._live_until = 0.0

    @property
    def pushed(self) -> bool:
        return self._clock() < self._live_until

    # -- reads --

    def _epoch(self, arena: str, view: str) -> Epoch:
        return self._everything, self._boards.get((arena, view), 0)

    def recent(self, arena: str, view: str, variant: Hashable) -> RenderedBoard | None:
        """The cached response if nothing says it changed, without asking Redis."""
        hit = self._entries.get((arena, view, variant))
        if hit is None or hit.epoch != self._epoch(arena, view):
            return None
        now = self._clock()
        window = self._recheck_s if now < self._live_until else self._fresh_s
        return hit if now - hit.checked < window else None

    async def rendered(self, reader: StandingsReader, registry: ModelRegistry, arena: str,
                       view: str, variant: Hashable, render: Render) -> RenderedBoard | None:
        """The response for board ``arena/view`` shaped by ``render`` (one per variant), or
        None when there is no such board."""
        hit = self.recent(arena, view, variant)
        if hit is not None:
            return hit
        key = (arena, view, variant)
        epoch = self._epoch(arena, view)
        loading = self._loading.get(key)
        task: asyncio.Future[RenderedBoard | None]
        if loading is None or loading[0] != epoch:  # none, or one that began before a change
            task = asyncio.ensure_future(
                self._load(reader, registry, arena, view, variant, render, epoch))
            self._loading[key] = (epoch, task)
            task.add_done_callback(lambda done: self._loaded(key, done))
        else:
            task = loading[1]
        return await asyncio.shield(task)

    def _loaded(self, key: Hashable, task: asyncio.Future[RenderedBoard | None]) -> None:
        loading = self._loading.get(key)
        if loading is not None and loading[1] is task:
            del self._loading[key]
        if not task.cancelled():
            task.exception()  # retrieved here too, in case every reader waiting was cancelled

    async def _load(self, reader: StandingsReader, registry: ModelRegistry, arena: str, view: str,
                    variant: Hashable, render: Render, epoch: Epoch) -> RenderedBoard | None:
        started = self._clock()
        raw = await reader.board(arena, view)
        if raw is None:
            return None
        version = await registry.version()
        key = (arena, view, variant)
        entry = self._entries.get(key)
        if entry is not None and entry.registry_version == version and entry.raw == raw:
            entry.checked, entry.epoch = started, epoch  # unchanged: no JSON work
        else:
            doc = orjson.loads(raw)
            doc["rows"] = labelled(doc["rows"], await registry.all_at(version),
                                   str(doc["board"]), self._policy)
            body = orjson.dumps(render(doc))
            entry = RenderedBoard(raw, version, body, json_headers(body), started, epoch)
        # an invalidation during this read leaves ``epoch`` behind: the next read loads again
        self._entries[key] = entry
        self._entries.move_to_end(key)
        if len(self._entries) > self._size:
            self._entries.popitem(last=False)
        return entry


class BoardChanges:
    """The api's subscriber to ``KeyLayout.board_changes()``: invalidates ``RenderedBoards`` on
    each message, and tells it whether the subscription is alive (pings when quiet)."""

    def __init__(self, client: RedisClient, channel: str, cache: RenderedBoards,
                 retry_s: float = 0.5) -> None:
        self._redis = client
        self._channel = channel
        self._cache = cache
        self._retry_s = retry_s
        self._down = False

    async def run(self) -> None:
        """Listen until cancelled, resubscribing after failures (polling meanwhile)."""
        while True:
            try:
                await self._listen()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any failure: poll, then resubscribe
                if not self._down:  # once per outage, not at every retry
                    log.warning("board changes: subscription lost (%s); board reads poll "
                                "Redis until it is back", exc)
                self._down = True
            finally:
                self._cache.lost()
            await asyncio.sleep(self._retry_s)

    async def _listen(self) -> None:
        if isinstance(self._redis, RedisCluster):
            # the cluster's subscription picks its node from the slots: read them first (a
            # client that has not talked to the cluster yet fails with a KeyError otherwise)
            await self._redis.initialize()
        pubsub = self._redis.pubsub()
        try:
            await pubsub.subscribe(self._channel)
            subscribed = False
            while True:
                message = await pubsub.get_message(timeout=PING_S)
                if message is None:
                    await pubsub.ping()
                    continue
                kind = message["type"]
                if kind == "subscribe":
                    # (re)subscribed, also after the client reconnected on its own: whatever
                    # was published meanwhile is lost
                    self._cache.invalidate_all()
                    subscribed = True
                    if self._down:
                        log.info("board changes: subscribed again")
                        self._down = False
                elif kind == "message":
                    self._changed(text(message["data"]))
                if subscribed:
                    self._cache.heard()
        finally:
            await _close(pubsub)

    def _changed(self, board: str) -> None:
        if board == ALL_BOARDS:
            self._cache.invalidate_all()
            return
        try:
            arena, view = split_board(board)
        except ValueError:
            self._cache.invalidate_all()  # not understood: assume the worst
            return
        self._cache.invalidate(arena, view)


async def _close(pubsub: PubSub, within_s: float = 2.0) -> None:
    """Close a subscription without hanging: redis-py's ``PubSub.aclose`` can wait forever for
    the socket to close (redis/redis-py#3941; once it held the api's shutdown past its 30 s
    grace), so it gets ``within_s``, then the connection is dropped without waiting."""
    try:
        async with asyncio.timeout(within_s):
            await pubsub.aclose()  # type: ignore[no-untyped-call]
    except TimeoutError:
        log.warning("board changes: closing the subscription timed out; dropping it")
        connection = pubsub.connection
        if connection is not None:
            await connection.disconnect(nowait=True)
