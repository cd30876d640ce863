"""The next-battle samplers of each vote board: after a refit, the board's pair probabilities
of every policy (``engine.sampling``) are computed from the fit and written next to its
standings (``KeyLayout.sampling``), where the api draws pairs from them.

Off the batch path: a refit only hands over a snapshot (battles and theta); one task per board
computes in a thread and writes, at most once per ``interval_s``, always ending with the last
snapshot handed over (so a board whose votes stop still gets the sampler of its last fit)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from contextlib import suppress

from services.common.redis_client import REDIS_ERRORS, RedisClient
from services.rating.engine import BoardFit, PairCounts
from services.rating.engine.sampling import POLICIES, BoardState, SamplingOptions, build_sampler
from shared.events import ModelInfo
from shared.keys import KeyLayout, board_name

log = logging.getLogger(__name__)

Registry = Callable[[], Awaitable[Mapping[str, ModelInfo]]]


def board_state(counts: PairCounts, fit: BoardFit, registry: Mapping[str, ModelInfo]
                ) -> BoardState:
    """What the sampler needs of a board: deprecated models (when the registry has the flag)
    are not eligible; organizations from the registry."""
    eligible = [not bool(getattr(registry.get(m), "deprecated", False)) for m in counts.models]
    organizations = {m: info.organization for m, info in registry.items()}
    return BoardState.of(counts, fit.theta, eligible, organizations)


def sampler_documents(state: BoardState, options: SamplingOptions) -> dict[str, bytes]:
    """policy -> its encoded sampler."""
    return {policy: build_sampler(state, policy, options).encode() for policy in POLICIES}


class SamplingModels:
    def __init__(self, client: RedisClient, keys: KeyLayout, registry: Registry,
                 options: SamplingOptions, interval_s: float) -> None:
        self._redis = client
        self._keys = keys
        self._registry = registry
        self._options = options
        self._interval_s = interval_s
        self._latest: dict[str, tuple[str, str, PairCounts, BoardFit]] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def offer(self, arena: str, view: str, counts: PairCounts, fit: BoardFit) -> None:
        """A refit's result; ``counts`` is copied (the worker updates its own in place)."""
        if counts.models != fit.models:
            return  # a failed refit: nothing to sample from
        board = board_name(arena, view)
        snapshot = PairCounts(counts.models, counts.cells.copy())
        self._latest[board] = (arena, view, snapshot, fit)
        if board not in self._tasks:
            task = asyncio.ensure_future(self._run(board))
            self._tasks[board] = task
            task.add_done_callback(lambda _: self._tasks.pop(board, None))

    async def _run(self, board: str) -> None:
        while board in self._latest:
            arena, view, counts, fit = self._latest.pop(board)
            try:
                await self._write(arena, view, counts, fit)
            except REDIS_ERRORS as exc:
                log.warning("next-battle samplers of %s not written: %s", board, exc)
            except Exception:
                log.exception("next-battle samplers of %s failed", board)
            if board in self._latest and self._interval_s > 0:
                await asyncio.sleep(self._interval_s)  # the cadence, not a wait for a state

    async def _write(self, arena: str, view: str, counts: PairCounts, fit: BoardFit) -> None:
        state = board_state(counts, fit, await self._registry())
        documents = await asyncio.to_thread(sampler_documents, state, self._options)
        async with self._redis.pipeline(transaction=False) as pipe:
            for policy, document in documents.items():
                pipe.set(self._keys.sampling(arena, view, policy), document)
            await pipe.execute()

    async def close(self) -> None:
        for task in list(self._tasks.values()):
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task
