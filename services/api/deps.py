"""Request dependencies of the api, as ``Annotated`` aliases."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request

from services.api.board_cache import RenderedBoards
from services.api.rows import ListingPolicy, labelled
from services.api.standings import StandingsReader
from services.common.registry import ModelRegistry
from shared.events import ModelInfo


async def _reader(request: Request) -> StandingsReader:
    reader: StandingsReader = request.app.state.reader
    return reader


async def _registry(request: Request) -> ModelRegistry:
    registry: ModelRegistry = request.app.state.registry
    return registry


async def _policy(request: Request) -> ListingPolicy:
    policy: ListingPolicy = request.app.state.listing_policy
    return policy


Reader = Annotated[StandingsReader, Depends(_reader)]
Registry = Annotated[ModelRegistry, Depends(_registry)]
Policy = Annotated[ListingPolicy, Depends(_policy)]


async def board_or_404(reader: StandingsReader, arena: str, view: str) -> dict[str, Any]:
    doc = await reader.board_doc(arena, view)
    if doc is None:
        raise HTTPException(404, f"no board {arena}/{view}: nothing has been counted on it")
    return doc


async def labelled_board(reader: StandingsReader, registry: ModelRegistry, arena: str,
                         view: str, policy: ListingPolicy
                         ) -> tuple[dict[str, Any], dict[str, ModelInfo]]:
    """The board document with registry-labelled rows (judged by ``policy``), and the registry
    it used."""
    doc = await board_or_404(reader, arena, view)
    models = await registry.all_at(await registry.version())
    doc["rows"] = labelled(doc["rows"], models, str(doc["board"]), policy)
    return doc, models


class RenderedBody:
    """The FastAPI routes' view of ``RenderedBoards``: a body, or 404."""

    def __init__(self, cache: RenderedBoards) -> None:
        self._cache = cache

    async def body(
        self,
        reader: StandingsReader,
        registry: ModelRegistry,
        arena: str,
        view: str,
        variant: Hashable,
        render: Callable[[dict[str, Any]], dict[str, Any]],
    ) -> bytes:
        """The response body for board ``arena/view`` shaped by ``render`` (one per variant)."""
        entry = await self._cache.rendered(reader, registry, arena, view, variant, render)
        if entry is None:
            raise HTTPException(404, f"no board {arena}/{view}: nothing has been counted on it")
        return entry.body


async def _rendered(request: Request) -> RenderedBody:
    return RenderedBody(request.app.state.rendered_boards)


Rendered = Annotated[RenderedBody, Depends(_rendered)]
