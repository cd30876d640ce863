"""The hot read, served before FastAPI's routing: ``GET /v1/leaderboards/{arena}/{view}``
without filters. Same bytes as the documented FastAPI route (which handles everything else,
errors included); it only skips per-request routing, validation and dependency work. A cached
response (services/api/board_cache.py) is sent with its cached headers and no Redis read."""

from __future__ import annotations

import re
import time
from typing import Any

from fastapi import FastAPI
from starlette.types import Receive, Scope, Send

from services.api.board_cache import RenderedBoard, RenderedBoards
from services.api.rows import RowFilter
from services.common.fast_path import FastPath
from services.common.http import note_redis_unavailable, send_redis_unavailable
from services.common.metrics import HttpMetrics
from services.common.redis_client import REDIS_UNAVAILABLE

BOARD_PATH = re.compile(
    r"^/v1/leaderboards/([a-z0-9][a-z0-9_-]{0,63})/"
    r"((?:overall|lang:[a-z0-9][a-z0-9_-]{0,63}|[a-z0-9][a-z0-9_-]{0,63})(?:\+style)?)$"
)
NO_FILTERS = RowFilter()
ROUTE = "/v1/leaderboards/{arena}/{view}"  # the route template the metrics name


class BoardFastPath(FastPath):
    """Wraps the api's FastAPI app (outermost, so no middleware runs for the hot read)."""

    def __init__(self, app: FastAPI) -> None:
        super().__init__(app)
        self._metrics: HttpMetrics | None = None
        self._counted: dict[int, Any] = {}
        self._timed: Any = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
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

    def _count(self, status: int, started: float) -> None:
        """Count and time the answer as the middleware would (labelled children kept)."""
        metrics: HttpMetrics | None = getattr(self.app.state, "metrics", None)
        if metrics is None:
            return
        if metrics is not self._metrics:
            self._metrics, self._counted = metrics, {}
            self._timed = metrics.latency.labels("GET", ROUTE)
        counted = self._counted.get(status)
        if counted is None:
            counted = self._counted[status] = metrics.requests.labels("GET", ROUTE, str(status))
        counted.inc()
        self._timed.observe(time.perf_counter() - started)

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
