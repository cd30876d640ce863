"""The hot reads, served before FastAPI's routing: ``GET /v1/leaderboards/{arena}/{view}``
without filters, and ``GET /v1/arenas/{arena}/next-battle`` with a well-formed query whose
board's sampler is in hand (services/api/next_battle.py). Same bytes as the documented FastAPI
routes (which handle everything else, errors included); it only skips per-request routing,
validation and dependency work. A cached board response (services/api/board_cache.py) is sent
with its cached headers and no Redis read."""

from __future__ import annotations

import re
import time
from typing import Any

from fastapi import FastAPI
from starlette.types import Receive, Scope, Send

from services.api import next_battle
from services.api.board_cache import RenderedBoard, RenderedBoards
from services.api.rows import RowFilter
from services.common.fast_path import FastPath
from services.common.http import note_redis_unavailable, send_redis_unavailable
from services.common.metrics import HttpMetrics
from services.common.redis_client import REDIS_UNAVAILABLE
from shared.keys import board_name
from shared.settings import ApiSettings

BOARD_PATH = re.compile(
    r"^/v1/leaderboards/([a-z0-9][a-z0-9_-]{0,63})/"
    r"((?:overall|lang:[a-z0-9][a-z0-9_-]{0,63}|[a-z0-9][a-z0-9_-]{0,63})(?:\+style)?)$"
)
NO_FILTERS = RowFilter()
ROUTE = "/v1/leaderboards/{arena}/{view}"  # the route template the metrics name
NEXT_BATTLE_ROUTE = "/v1/arenas/{arena}/next-battle"
JSON_HEADERS = [(b"content-type", b"application/json")]


class BoardFastPath(FastPath):
    """Wraps the api's FastAPI app (outermost, so no middleware runs for the hot read)."""

    def __init__(self, app: FastAPI) -> None:
        super().__init__(app)
        self._metrics: HttpMetrics | None = None
        self._counted: dict[tuple[str, int], tuple[Any, Any]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (scope["type"] == "http" and scope["method"] == "GET"
                and scope["path"].endswith("/next-battle")
                and await self._next_battle(scope, send)):
            return
        if scope["type"] == "http" and scope["method"] == "GET" and not scope["query_string"]:
            match = BOARD_PATH.match(scope["path"])
            if match is not None:
                started = time.perf_counter()
                try:
                    entry = await self._entry(match.group(1), match.group(2))
                except REDIS_UNAVAILABLE as exc:  # down, restarting or saturated: retryable
                    note_redis_unavailable(exc)
                    await send_redis_unavailable(send)
                    self._count(503, started)
                    return
                if entry is not None:
                    await send({"type": "http.response.start", "status": 200,
                                "headers": entry.headers})
                    await send({"type": "http.response.body", "body": entry.body})
                    self._count(200, started)
                    return
        await self.app(scope, receive, send)

    async def _next_battle(self, scope: Scope, send: Send) -> bool:
        """Answer a next-battle request whose sampler is cached; False: the route answers."""
        started = time.perf_counter()
        match = next_battle.PATH.match(scope["path"])
        state = self.app.state
        cache: next_battle.SamplerCache | None = getattr(state, "samplers", None)
        if match is None or cache is None:
            return False
        settings: ApiSettings = state.settings
        query = next_battle.simple_query(scope["query_string"], settings.api_next_battle_max_n)
        if query is None:
            return False
        arena, (view, n) = match.group(1), query
        policy = settings.api_sampling_policy.get(arena, settings.api_sampling_default_policy)
        sampler = cache.cached(arena, view, policy)
        if sampler is None or sampler.pairs == 0:
            return False
        body = next_battle.next_battle_body(settings, sampler, board_name(arena, view), policy,
                                            n, state.sampling_rng)
        await send({"type": "http.response.start", "status": 200, "headers": JSON_HEADERS})
        await send({"type": "http.response.body", "body": body})
        self._count(200, started, NEXT_BATTLE_ROUTE)
        return True

    def _count(self, status: int, started: float, route: str = ROUTE) -> None:
        """Count and time the answer as the middleware would (labelled children kept)."""
        metrics: HttpMetrics | None = getattr(self.app.state, "metrics", None)
        if metrics is None:
            return
        if metrics is not self._metrics:
            self._metrics, self._counted = metrics, {}
        counted = self._counted.get((route, status))
        if counted is None:
            counted = self._counted[(route, status)] = (
                metrics.requests.labels("GET", route, str(status)),
                metrics.latency.labels("GET", route))
        counted[0].inc()
        counted[1].observe(time.perf_counter() - started)

    async def _entry(self, arena: str, view: str) -> RenderedBoard | None:
        state = self.app.state
        cache: RenderedBoards | None = getattr(state, "rendered_boards", None)
        if cache is None:  # lifespan not run (yet)
            return None
        hit = cache.recent(arena, view, NO_FILTERS)  # no Redis while nothing changed
        if hit is not None:
            return hit
        # None: no such board; the route answers 404 in the documented shape
        return await cache.rendered(state.reader, state.registry, arena, view, NO_FILTERS,
                                    NO_FILTERS.render)
