"""The hot read, served before FastAPI's routing: ``GET /v1/leaderboards/{arena}/{view}``
without filters. Same bytes as the documented FastAPI route (which handles everything else,
errors included); it only skips per-request routing, validation and dependency work."""

from __future__ import annotations

import re

from fastapi import FastAPI
from starlette.types import Receive, Scope, Send

from services.api.deps import RenderedBoards
from services.api.rows import RowFilter
from services.api.standings import StandingsReader
from services.common.registry import ModelRegistry

BOARD_PATH = re.compile(
    r"^/v1/leaderboards/([a-z0-9][a-z0-9_-]{0,63})/"
    r"((?:overall|lang:[a-z0-9][a-z0-9_-]{0,63}|[a-z0-9][a-z0-9_-]{0,63})(?:\+style)?)$"
)
NO_FILTERS = RowFilter()


class BoardFastPath:
    """Wraps the api's FastAPI app (outermost, so no middleware runs for the hot read)."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET" and not scope["query_string"]:
            match = BOARD_PATH.match(scope["path"])
            if match is not None:
                body = await self._body(scope, match.group(1), match.group(2))
                if body is not None:
                    await send({"type": "http.response.start", "status": 200, "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode()),
                    ]})
                    await send({"type": "http.response.body", "body": body})
                    return
        await self.app(scope, receive, send)

    async def _body(self, scope: Scope, arena: str, view: str) -> bytes | None:
        state = self.app.state
        if not hasattr(state, "rendered_boards"):  # lifespan not run (yet)
            return None
        cache: RenderedBoards = state.rendered_boards
        body = cache.recent(arena, view, NO_FILTERS)
        if body is not None:
            return body
        reader: StandingsReader = state.reader
        registry: ModelRegistry = state.registry
        if await reader.board(arena, view) is None:
            return None  # let the route answer 404 in the documented shape
        return await cache.body(reader, registry, arena, view, NO_FILTERS, NO_FILTERS.render)
