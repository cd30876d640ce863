"""``GET /v1/arenas/{arena}/next-battle``: which pairs of models to show next.

Read-side only: the rating worker writes each board's pair probabilities per policy after its
refits (``shared/sampling_model.py``); this draws ``n`` pairs from the arena's policy, each with
the reason it was picked and a signed sampling token for the vote to bring back
(``shared/sampling_tokens.py``). A board's sampler is kept in process and re-read from Redis
when older than ``api_sampling_cache_s``: one GET per board and second, not per request."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from typing import Annotated, Any

import numpy as np
import orjson
from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from services.api.params import ArenaParam
from services.common.redis_client import REDIS_ERRORS, RedisClient
from shared.keys import KeyLayout, board_name
from shared.sampling_model import PairSampler, Policy, Reason
from shared.sampling_tokens import new_claim, sign
from shared.settings import ApiSettings

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1/arenas", tags=["sampling"])

SLUG = r"^[a-z0-9][a-z0-9_-]{0,63}$"
SLUG_BYTES = re.compile(SLUG.encode())
PATH = re.compile(r"^/v1/arenas/([a-z0-9][a-z0-9_-]{0,63})/next-battle$")


class BattlePair(BaseModel):
    model_a: str
    model_b: str
    reason: Reason = Field(description="Why the pair was picked: `information_gain` (active "
                           "policy), `new_model_boost`, `exploration_floor` or `uniform`.")
    probability: float = Field(description="The pair's probability under the policy.")
    sampling_token: str | None = Field(description="Send it back with the vote "
                                       "(`sampling_token`); null when no secret is set.")


class NextBattle(BaseModel):
    board: str
    policy: Policy
    pairs: list[BattlePair]
    token_ttl_s: int


class SamplerCache:
    """Each board's sampler of each policy as last read from Redis (None: none written). An
    entry older than ``fresh_s`` is still served while one background task re-reads it (a
    400 kB GET and its decoding stay off the requests' way); only a board's first request
    waits for the read."""

    def __init__(self, client: RedisClient, keys: KeyLayout, fresh_s: float) -> None:
        self._redis = client
        self._keys = keys
        self._fresh_s = fresh_s
        self._entries: dict[tuple[str, str, str], tuple[float, PairSampler | None]] = {}
        self._refreshing: dict[tuple[str, str, str], asyncio.Task[None]] = {}

    async def sampler(self, arena: str, view: str, policy: str) -> PairSampler | None:
        key = (arena, view, policy)
        entry = self._entries.get(key)
        if entry is None or entry[1] is None:  # nothing to serve meanwhile: read now
            if entry is None or time.monotonic() - entry[0] >= self._fresh_s:
                await self._read(key)
            return self._entries[key][1]
        self._refresh_if_stale(key, entry[0])
        return entry[1]

    def cached(self, arena: str, view: str, policy: str) -> PairSampler | None:
        """The sampler in hand, without waiting (a stale one starts its re-read); None when
        there is none yet (the route then reads it)."""
        key = (arena, view, policy)
        entry = self._entries.get(key)
        if entry is None or entry[1] is None:
            return None
        self._refresh_if_stale(key, entry[0])
        return entry[1]

    def _refresh_if_stale(self, key: tuple[str, str, str], read_at: float) -> None:
        if time.monotonic() - read_at >= self._fresh_s and key not in self._refreshing:
            task = asyncio.ensure_future(self._refresh(key))
            self._refreshing[key] = task
            task.add_done_callback(lambda _: self._refreshing.pop(key, None))

    async def _refresh(self, key: tuple[str, str, str]) -> None:
        try:
            await self._read(key)
        except REDIS_ERRORS as exc:  # the entry in hand stays served; the next request retries
            log.warning("re-reading the sampler of %s failed: %s", key, exc)

    async def _read(self, key: tuple[str, str, str]) -> None:
        read_at = time.monotonic()
        raw = await self._redis.get(self._keys.sampling(*key))
        sampler = None
        if raw is not None:
            try:
                sampler = PairSampler.decode(raw if isinstance(raw, bytes) else raw.encode())
            except ValueError:
                sampler = None  # another format (a newer worker): as if none were written
        self._entries[key] = (read_at, sampler)

    async def close(self) -> None:
        for task in list(self._refreshing.values()):
            task.cancel()
        await asyncio.gather(*self._refreshing.values(), return_exceptions=True)


def _view(category: str | None, language: str | None) -> str:
    if category is not None and language is not None:
        raise HTTPException(422, [{"loc": ["query", "language"], "type": "value_error",
                                   "msg": "give category or language, not both: a battle is "
                                   "drawn from one board"}])
    if category is not None:
        return category
    return f"lang:{language}" if language is not None else "overall"


@router.get(
    "/{arena}/next-battle",
    response_model=NextBattle,
    summary="Pairs of models to show next, with reasons and sampling tokens",
    description="Drawn (with replacement) from the board's pair probabilities under the "
    "arena's policy, computed by the rating worker from the live fit. `category` or "
    "`language` picks the board (default `overall`). Send each pair's `sampling_token` back "
    "with the vote: the vote is then tallied under the policy that chose its pair.",
    responses={404: {"description": "No such arena or board (or no votes on it yet)."}},
)
async def next_battle(
    request: Request,
    arena: ArenaParam,
    category: Annotated[str | None, Query(pattern=SLUG, examples=["coding"])] = None,
    language: Annotated[str | None, Query(pattern=SLUG, examples=["zh"])] = None,
    n: Annotated[int, Query(ge=1, description="How many pairs (at most "
                            "PODIUM_API_NEXT_BATTLE_MAX_N).")] = 1,
) -> Any:
    settings: ApiSettings = request.app.state.settings
    if n > settings.api_next_battle_max_n:
        raise HTTPException(422, [{"loc": ["query", "n"], "type": "less_than_equal",
                                   "msg": f"n must be at most {settings.api_next_battle_max_n}"}])
    view = _view(category, language)
    policy = settings.api_sampling_policy.get(arena, settings.api_sampling_default_policy)
    cache: SamplerCache = request.app.state.samplers
    sampler = await cache.sampler(arena, view, policy)
    board = board_name(arena, view)
    if sampler is None or sampler.pairs == 0:
        raise HTTPException(404, f"no board {board} to draw battles from (unknown arena or "
                            "category, or no votes counted on it yet)")
    rng: np.random.Generator = request.app.state.sampling_rng
    return Response(next_battle_body(settings, sampler, board, policy, n, rng),
                    media_type="application/json")


def next_battle_body(settings: ApiSettings, sampler: PairSampler, board: str, policy: str,
                     n: int, rng: np.random.Generator) -> bytes:
    """The answer: ``n`` pairs drawn from ``sampler``, each with its reason, probability and
    token (shared by the route and the fast path, services/api/board_fast_path.py)."""
    secret = settings.sampling_secret
    key = None if secret is None else secret.get_secret_value().encode()
    now = time.time()
    pairs = []
    for first, second, reason, probability in sampler.draw(n, rng):
        a, b = sampler.models[first], sampler.models[second]
        if rng.random() < 0.5:  # sides at random, as the arena shows them
            a, b = b, a
        token = None if key is None else sign(new_claim(board, a, b, policy, now), key)
        pairs.append({"model_a": a, "model_b": b, "reason": reason,
                      "probability": probability, "sampling_token": token})
    return orjson.dumps({"board": board, "policy": policy, "pairs": pairs,
                         "token_ttl_s": settings.sampling_token_ttl_s})


def simple_query(query: bytes, max_n: int) -> tuple[str, int] | None:
    """(view, n) of a well-formed next-battle query (the fast path's); None for anything
    else, which the route then answers (its 422s included)."""
    view, n = "overall", 1
    seen: set[bytes] = set()
    for part in query.split(b"&") if query else ():
        name, _, value = part.partition(b"=")
        if name in seen:
            return None
        seen.add(name)
        if name == b"n" and value.isdigit() and len(value) <= 4:
            n = int(value)
        elif name == b"category" and SLUG_BYTES.match(value):
            view = value.decode()
        elif name == b"language" and SLUG_BYTES.match(value):
            view = f"lang:{value.decode()}"
        else:
            return None
    if len(seen & {b"category", b"language"}) > 1 or not 1 <= n <= max_n:
        return None
    return view, n
