"""Applying a batch's slices to the arena counts in Redis exactly once (the offset fence), and
the worker's cached copy of each arena's counts, Elo and style battles between batches."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from services.common.runtime import off_the_loop
from services.rating.arena_slices import ArenaSlice, RawRecord
from services.rating.arena_state import ArenaState, rest_after
from services.rating.engine import BattleColumns, PairCounts
from services.rating.online_elo import EloOptions, online_elo
from services.rating.read_models import ArenaFence
from services.rating.store import ALREADY_APPLIED, APPLIED, STALE, RatingStore
from shared.events import Vote
from shared.keys import KeyLayout

log = logging.getLogger(__name__)


class CountsApplier:
    """The fenced apply of slices into one key space (``store``), with the cached state of each
    arena it has seen; the cache is valid while the arena's version in Redis is the cached one
    (the apply script refuses a slice computed from a stale state)."""

    def __init__(self, store: RatingStore, elo: EloOptions) -> None:
        self._store = store
        self._elo = elo
        self._arenas: dict[str, ArenaState] = {}

    @property
    def store(self) -> RatingStore:
        return self._store

    def switch_to(self, keys: KeyLayout) -> None:
        """Write to another key space (generation) from now on; the cache belonged to the old."""
        self._store = self._store.for_keys(keys)
        self._arenas.clear()

    def forget(self) -> None:
        """Drop every cached arena (an apply may or may not have landed: reload)."""
        self._arenas.clear()

    def cached(self, arena: str) -> ArenaState | None:
        """The cached state of an arena, None if not loaded."""
        return self._arenas.get(arena)

    async def state(self, arena: str, views: Iterable[str]) -> ArenaState:
        """The cached counts and Elo of an arena's views, loaded from Redis when missing."""
        state = self._arenas.get(arena)
        missing = [v for v in views if state is None or v not in state.counts]
        if state is not None and not missing:
            return state
        snapshot = await self._store.load(arena, missing)
        if state is None or snapshot.version != state.version:
            everything = set(missing) | (set(state.counts) if state else set())
            snapshot = await self._store.load(arena, everything)
            state = self._arenas[arena] = ArenaState(snapshot.version, {}, {})
        state.counts.update(snapshot.counts)
        state.elo.update(snapshot.elo)
        return state

    async def apply(self, sl: ArenaSlice, votes: list[tuple[RawRecord, Vote]]) -> bool:
        """Apply one slice exactly once; True if it changed the counts."""
        while True:
            state = await self.state(sl.arena, sl.increments)
            elo_after = await off_the_loop(  # Elo depends on offset order
                len(sl.battles), online_elo, sl, state.elo, self._elo)
            result = await self._store.apply(sl, state.version, elo_after)
            if result.status == APPLIED:
                state.absorb(sl, elo_after, result.version)
                return True
            if result.status == STALE:  # another writer moved the arena on: reload, retry
                log.info("arena %s changed elsewhere; reloading its state", sl.arena)
                self._arenas.pop(sl.arena, None)
                continue
            if result.status == ALREADY_APPLIED:
                return False
            # partly applied before (a replay overlapping what was applied): keep the rest
            rest = rest_after(sl, votes, result.fence)
            if rest is None:
                return False
            sl = rest

    async def style_state(self, arena: str, view: str) -> tuple[ArenaState, BattleColumns]:
        """The cached state of the arena and a copy of the view's style battles in it."""
        while True:
            state = await self.state(arena, [view])
            columns = state.battles.get(view)
            if columns is None:
                version, columns = await self._store.load_battles(arena, view)
                if version != state.version:  # applied elsewhere meanwhile: reload both
                    self._arenas.pop(arena, None)
                    continue
                state.battles[view] = columns
            return state, columns.snapshot()  # the fit runs in a thread while batches go on

    async def fence_of(self, arena: str, view: str, counts: PairCounts) -> ArenaFence | None:
        """The fence an owed write made from ``counts`` must find unchanged: the arena at the
        version of the cached state, if that state's counts of the view are ``counts``; None
        (the write is dropped) if they differ."""
        state = self._arenas.get(arena)
        if state is None or state.counts.get(view) is not counts:
            # reloaded or dropped since (a Redis error, a switch of generation, another writer):
            # the write still stands if the view's counts are the ones it was made from
            state = await self.state(arena, [view])
            if state.counts[view] != counts:
                return None
        return ArenaFence(self._store.keys.fence(arena), state.version)
