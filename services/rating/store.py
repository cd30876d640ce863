"""Redis adapter of the rating service: the atomic, fenced apply and the standings documents."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from importlib.resources import files

from services.common.redis_client import RedisClient, execute_and_publish
from services.rating.arena_slices import ArenaSlice, RecentWindow, lua_args, recent_section
from services.rating.engine import BattleColumns, PairCounts
from services.rating.packed_counts import decode_board, names_by_number
from shared.generations import Generations, read_generations
from shared.keys import KeyLayout, board_name, text

APPLY_SCRIPT = files("services.rating").joinpath("apply_batch.lua").read_text()
WRITE_STYLE_BOARD_SCRIPT = files("services.rating").joinpath("write_style_board.lua").read_text()

APPLIED, ALREADY_APPLIED, PARTLY_APPLIED, BEHIND, STALE = 1, 0, -1, -2, -3
VERSION_FIELD = "_version"


@dataclass(frozen=True)
class ApplyResult:
    status: int  # APPLIED, ALREADY_APPLIED, PARTLY_APPLIED or STALE
    fence: int  # the partition's fence after the call (-1 when STALE)
    version: int  # the arena's version after the call


@dataclass(frozen=True)
class ArenaSnapshot:
    """An arena's views as stored, read at one version."""

    version: int
    counts: dict[str, PairCounts]
    elo: dict[str, dict[str, float]]


DEFAULT_SAMPLING_WINDOW_S = 86_400  # as PodiumSettings.sampling_window_s


class RatingStore:
    """``window_s``: the sampling report's recent window, which the apply keeps hourly buckets
    of (``KeyLayout.sampling_recent``); ``clock``: unix time, for which buckets are still in
    it."""

    def __init__(self, client: RedisClient, keys: KeyLayout,
                 window_s: int = DEFAULT_SAMPLING_WINDOW_S,
                 clock: Callable[[], float] = time.time) -> None:
        self._redis = client
        self._keys = keys
        self._window_s = window_s
        self._clock = clock
        self._apply = client.register_script(APPLY_SCRIPT)
        self._write_style_board = client.register_script(WRITE_STYLE_BOARD_SCRIPT)

    @property
    def keys(self) -> KeyLayout:
        return self._keys

    @property
    def redis(self) -> RedisClient:
        return self._redis

    def for_keys(self, keys: KeyLayout) -> RatingStore:
        """The same Redis, another key space (generation)."""
        return self if keys == self._keys else RatingStore(self._redis, keys, self._window_s,
                                                            self._clock)

    async def generations(self, base: KeyLayout) -> Generations:
        return await read_generations(self._redis, base)

    async def read_fence(self, arena: str) -> dict[str, int]:
        """``topic/partition`` -> last applied offset, of one arena."""
        raw = await self._redis.hgetall(self._keys.fence(arena))
        return {text(k): int(v) for k, v in raw.items() if text(k) != VERSION_FIELD}

    async def read_fences_and_register(
        self, arenas: Iterable[str], registry: Mapping[str, Iterable[str]]
    ) -> dict[str, dict[str, int]]:
        """The fences of some arenas (as ``read_fence``), read in one round trip that also adds
        arenas to sets (``registry``: set key -> arenas, the partitions' arena sets)."""
        wanted = sorted(set(arenas))
        async with self._redis.pipeline(transaction=False) as pipe:
            for key, members in registry.items():
                pipe.sadd(key, *sorted(members))
            for arena in wanted:
                pipe.hgetall(self._keys.fence(arena))
            replies = await pipe.execute()
        raws = replies[len(registry):]
        return {arena: {text(k): int(v) for k, v in raw.items() if text(k) != VERSION_FIELD}
                for arena, raw in zip(wanted, raws, strict=True)}

    async def read_fence_fields(
        self, fields: Iterable[tuple[str, str]]
    ) -> dict[tuple[str, str], int]:
        """(arena, ``topic/partition``) -> its fence, -1 where there is none."""
        wanted = sorted(set(fields))
        if not wanted:
            return {}
        async with self._redis.pipeline(transaction=False) as pipe:
            for arena, field in wanted:
                pipe.hget(self._keys.fence(arena), field)
            replies = await pipe.execute()
        return {key: -1 if raw is None else int(raw)
                for key, raw in zip(wanted, replies, strict=True)}

    async def boards(self) -> list[tuple[str, str]]:
        """Every (arena, view) with counts in this key space."""
        out: list[tuple[str, str]] = []
        for arena in sorted(text(a) for a in await self._redis.smembers(self._keys.arenas())):
            views = await self._redis.smembers(self._keys.views(arena))
            out.extend((arena, text(v)) for v in sorted(views))
        return out

    async def apply(
        self,
        sl: ArenaSlice,
        version: int,
        elo: Mapping[str, Mapping[str, float]] | None = None,
        required_fence: int = -1,
    ) -> ApplyResult:
        """Apply a slice (counts, and the Elo ratings after it) exactly once, if the arena is
        still at ``version`` (the state the caller computed Elo from). With ``required_fence``,
        nothing is applied (status BEHIND) while the fence is below it. The slice's battles
        also go into the recent window's hourly buckets, in the same atomic, fenced call."""
        buckets, recent = recent_section(sl, RecentWindow(self._window_s, self._clock()))
        views, argv = lua_args(sl, version, elo, required_fence, recent)
        keys = [
            self._keys.fence(sl.arena),
            self._keys.views(sl.arena),
            self._keys.model_index(sl.arena),
            *(self._keys.counts(sl.arena, v) for v in views),
            *(self._keys.elo(sl.arena, v) for v in views),
            *(self._keys.battles(sl.arena, v) for v in views),
            *(self._keys.sampling_recent(sl.arena, v, bucket) for v, bucket in buckets),
        ]
        status, fence, new_version = await self._apply(keys=keys, args=argv)
        return ApplyResult(int(status), int(fence), int(new_version))

    async def version(self, arena: str) -> int:
        raw = await self._redis.hget(self._keys.fence(arena), VERSION_FIELD)
        return int(raw) if raw is not None else 0

    async def read_counts(self, arena: str, view: str) -> dict[tuple[str, str, str], int]:
        """The board's counts as canonical triples (a < b by name)."""
        return (await self.load(arena, [view])).counts[view].triples()

    async def load(self, arena: str, views: Iterable[str], counts: bool = True) -> ArenaSnapshot:
        """Counts (unless ``counts`` is False) and Elo of some views at one consistent version
        (retries if an apply lands while reading)."""
        wanted = sorted(set(views))
        while True:
            before = await self.version(arena)
            async with self._redis.pipeline(transaction=False) as pipe:
                if counts:
                    pipe.hgetall(self._keys.model_index(arena))
                    for view in wanted:
                        pipe.get(self._keys.counts(arena, view))
                for view in wanted:
                    pipe.hgetall(self._keys.elo(arena, view))
                replies = await pipe.execute()
            if await self.version(arena) != before:
                continue
            elo_replies = replies[len(replies) - len(wanted):]
            elo = {view: {text(k): float(v) for k, v in raw.items()}
                   for view, raw in zip(wanted, elo_replies, strict=True)}
            tables: dict[str, PairCounts] = {}
            if counts:
                names = names_by_number(replies[0])
                tables = {view: decode_board(names, raw)
                          for view, raw in zip(wanted, replies[1:1 + len(wanted)], strict=True)}
            return ArenaSnapshot(before, tables, elo)

    async def load_battles(self, arena: str, view: str) -> tuple[int, BattleColumns]:
        """The style battles of a view and the arena version they were read at."""
        while True:
            before = await self.version(arena)
            chunks = await self._redis.lrange(self._keys.battles(arena, view), 0, -1)
            if await self.version(arena) != before:
                continue
            columns = BattleColumns()
            for chunk in chunks:
                if not isinstance(chunk, bytes):
                    raise TypeError("battle chunks need a Redis client without decode_responses")
                columns.extend(BattleColumns.from_bytes(chunk))
            return before, columns

    async def register_arenas(self, arenas: set[str]) -> None:
        if arenas:
            await self._redis.sadd(self._keys.arenas(), *sorted(arenas))

    async def write_standings(self, arena: str, view: str, document: bytes) -> None:
        key = self._keys.standings(arena, view)
        await execute_and_publish(  # and tell the api's cache
            self._redis, lambda pipe: pipe.set(key, document), self._keys.board_changes(),
            board_name(arena, view))

    async def write_style_standings(
        self, arena: str, view: str, document: bytes, version: int
    ) -> bool:
        """Write a style-controlled board's standings, list it among the arena's boards and tell
        the api's cache, if the arena is still at ``version``; False (nothing written) if not."""
        keys = [self._keys.fence(arena), self._keys.standings(arena, view),
                self._keys.views(arena)]
        args: list[str | int | bytes] = [VERSION_FIELD, version, document, view,
                                         self._keys.board_changes(), board_name(arena, view)]
        return bool(await self._write_style_board(keys=keys, args=args))

    async def read_standings(self, arena: str, view: str) -> bytes | None:
        value = await self._redis.get(self._keys.standings(arena, view))
        return value.encode() if isinstance(value, str) else value
