"""Request dependencies of the api, as ``Annotated`` aliases."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Annotated, Any

import orjson
from fastapi import Depends, HTTPException, Request

from services.api.rows import labelled
from services.api.standings import StandingsReader
from services.common.registry import ModelRegistry
from shared.events import ModelInfo


async def _reader(request: Request) -> StandingsReader:
    reader: StandingsReader = request.app.state.reader
    return reader


async def _registry(request: Request) -> ModelRegistry:
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
    models = await registry.all_at(await registry.version())
    doc["rows"] = labelled(doc["rows"], models)
    return doc, models


@dataclass
class _Rendered:
    raw: bytes  # the standings document as the rating service wrote it
    registry_version: int
    body: bytes  # the response made from them
    checked: float  # monotonic time of the last check against Redis


class RenderedBoards:
    """Responses of board reads, reused while neither the standings document nor the registry
    changed: a read then costs two Redis GETs and no JSON work."""

    def __init__(self, size: int = 512, fresh_s: float = 0.0) -> None:
        self._size = size
        self._fresh_s = fresh_s
        self._entries: OrderedDict[Hashable, _Rendered] = OrderedDict()

    def recent(self, arena: str, view: str, variant: Hashable) -> bytes | None:
        """A body checked against Redis less than ``fresh_s`` ago, without asking Redis."""
        hit = self._entries.get((arena, view, variant))
        if hit is not None and time.monotonic() - hit.checked < self._fresh_s:
            return hit.body
        return None

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
        raw = await reader.board(arena, view)
        if raw is None:
            raise HTTPException(404, f"no board {arena}/{view}: nothing has been counted on it")
        version = await registry.version()
        key = (arena, view, variant)
        hit = self._entries.get(key)
        now = time.monotonic()
        if hit is not None and hit.registry_version == version and hit.raw == raw:
            self._entries.move_to_end(key)
            hit.checked = now
            return hit.body
        doc = orjson.loads(raw)
        doc["rows"] = labelled(doc["rows"], await registry.all_at(version))
        body = orjson.dumps(render(doc))
        self._entries[key] = _Rendered(raw, version, body, now)
        if len(self._entries) > self._size:
            self._entries.popitem(last=False)
        return body


async def _rendered(request: Request) -> RenderedBoards:
    cache: RenderedBoards = request.app.state.rendered_boards
    return cache


Rendered = Annotated[RenderedBoards, Depends(_rendered)]
