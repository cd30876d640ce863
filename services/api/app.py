"""The api HTTP service: live standings as JSON, and the leaderboard page."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.resources import files
from typing import Annotated, Any

import redis.asyncio as aioredis
from fastapi import FastAPI, HTTPException, Path, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, Field

from services.api.standings import StandingsReader
from services.common.http import OrjsonResponse, install_error_handlers
from shared.settings import ApiSettings

ArenaParam = Annotated[
    str, Path(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$", examples=["text"], description="Arena.")
]
ViewParam = Annotated[
    str,
    Path(
        pattern=r"^(overall|lang:[a-z0-9][a-z0-9_-]{0,63}|[a-z0-9][a-z0-9_-]{0,63})$",
        examples=["overall", "coding", "lang:zh"],
        description="`overall`, a category, or `lang:{language}`.",
    ),
]


class BoardSummary(BaseModel):
    board: str = Field(examples=["text/overall"])
    arena: str
    view: str
    models: int
    votes: int
    updated_at: str


class BoardList(BaseModel):
    boards: list[BoardSummary]


class Row(BaseModel):
    rank: int
    rank_ub: int
    model: str
    score: float
    ci_low: float
    ci_high: float
    votes: int
    wins: float
    losses: float
    ties: float
    preliminary: bool
    elo: float = Field(description="Online Elo (K=4), the secondary column; depends on vote order.")


class Standings(BaseModel):
    board: str = Field(examples=["text/overall"])
    arena: str
    view: str
    updated_at: str
    models: int
    votes: int
    rows: list[Row] = Field(description="Ordered by score, best first.")


def create_app(settings: ApiSettings, redis_client: aioredis.Redis | None = None) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        client = redis_client or aioredis.Redis.from_url(settings.redis_url)
        app.state.redis = client
        app.state.reader = StandingsReader(client, settings.keys)
        try:
            yield
        finally:
            if redis_client is None:
                await client.aclose()

    app = FastAPI(
        title="Podium api",
        version="0.1.0",
        description="Live Bradley-Terry arena leaderboards (read-only).",
        lifespan=lifespan,
        default_response_class=OrjsonResponse,
    )
    install_error_handlers(app)

    def reader(request: Request) -> StandingsReader:
        r: StandingsReader = request.app.state.reader
        return r

    @app.get("/v1/leaderboards", response_model=BoardList, summary="All boards and their sizes")
    async def list_boards(request: Request) -> Any:
        return OrjsonResponse({"boards": await reader(request).boards()})

    @app.get(
        "/v1/leaderboards/{arena}/{view}",
        response_model=Standings,
        summary="Live standings of one board",
        responses={404: {"description": "No such board (no votes counted on it yet)."}},
    )
    async def get_board(request: Request, arena: ArenaParam, view: ViewParam) -> Any:
        raw = await reader(request).board(arena, view)
        if raw is None:
            raise HTTPException(404, f"no board {arena}/{view}: no votes have been counted on it")
        return Response(raw, media_type="application/json")

    @app.get("/healthz", summary="Liveness")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", summary="Readiness: Redis reachable")
    async def readyz(request: Request) -> Response:
        try:
            await request.app.state.redis.ping()
        except (aioredis.ConnectionError, aioredis.TimeoutError, OSError):
            return OrjsonResponse({"redis": False}, status_code=503)
        return OrjsonResponse({"redis": True})

    page = files("services.api").joinpath("static/index.html").read_text()

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index() -> HTMLResponse:
        return HTMLResponse(page)

    return app
