"""Request dependencies of the api, as ``Annotated`` aliases."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request

from services.api.rows import labelled
from services.api.standings import StandingsReader
from services.common.registry import ModelRegistry
from shared.events import ModelInfo


def _reader(request: Request) -> StandingsReader:
    reader: StandingsReader = request.app.state.reader
    return reader


def _registry(request: Request) -> ModelRegistry:
    registry: ModelRegistry = request.app.state.registry
    return registry


Reader = Annotated[StandingsReader, Depends(_reader)]
Registry = Annotated[ModelRegistry, Depends(_registry)]


async def board_or_404(reader: StandingsReader, arena: str, view: str) -> dict[str, Any]:
    doc = await reader.board_doc(arena, view)
    if doc is None:
        raise HTTPException(404, f"no board {arena}/{view}: nothing has been counted on it")
    return doc


async def labelled_board(reader: StandingsReader, registry: ModelRegistry, arena: str,
                         view: str) -> tuple[dict[str, Any], dict[str, ModelInfo]]:
    """The board document with registry-labelled rows, and the registry it used."""
    doc = await board_or_404(reader, arena, view)
    models = await registry.all()
    doc["rows"] = labelled(doc["rows"], models)
    return doc, models
