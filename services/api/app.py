"""The api HTTP service: live standings, models, matchups and rank changes, and the page.

It only reads Redis (and the rank-change topic); it never computes ratings.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager, suppress
from importlib.resources import files

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, Response

from services.api import (
    leaderboards,
    model_routes,
    next_battle,
    release_routes,
    sampling_report,
    streams,
)
from services.api.board_cache import BoardChanges, RenderedBoards
from services.api.board_fast_path import BoardFastPath
from services.api.metrics import ApiMetrics
from services.api.rank_feed import RankChangeFeed
from services.api.rows import ListingPolicy
from services.api.standings import StandingsReader
from services.common.health import KafkaProbe, RedisProbe
from services.common.http import OrjsonResponse, RequestAdmission, install_error_handlers
from services.common.metrics import RequestContextMiddleware, metrics_response
from services.common.redis_client import RedisClient, check_topology, connect_for_requests
from services.common.registry import ModelRegistry
from services.common.release_records import ReleaseRecords
from shared.settings import ApiSettings

log = logging.getLogger(__name__)


def create_app(settings: ApiSettings, redis_client: RedisClient | None = None) -> BoardFastPath:
    """The api as served: its FastAPI app behind the board read's fast path."""
    metrics = ApiMetrics()
    app = FastAPI(
        title="Podium api",
        version="0.2.0",
        description="Live Bradley-Terry arena leaderboards (read-only): standings with filters, "
        "models and their history, matchups, groups, exports, and rank changes streamed over "
        "SSE and WebSocket.",
        lifespan=_lifespan(settings, redis_client, metrics),
        default_response_class=OrjsonResponse,
        # no redirect to the path with(out) its trailing slash: Starlette builds that URL from
        # the Host header, which any client sets (docs/decisions.md: a 404 instead)
        redirect_slashes=False,
    )
    install_error_handlers(app)
    app.state.metrics = metrics
    app.add_middleware(RequestAdmission, limit=settings.http_max_requests_in_flight,
                       wait_s=settings.http_queue_timeout_s,
                       exempt=("/healthz", "/readyz", "/metrics", "/v1/events/"))
    app.add_middleware(RequestContextMiddleware, metrics=metrics)  # outermost
    app.include_router(leaderboards.router)
    app.include_router(model_routes.router)
    app.include_router(streams.router)
    app.include_router(release_routes.router)
    app.include_router(next_battle.router)
    app.include_router(sampling_report.router)
    _add_ops_and_page_routes(app, metrics)
    return BoardFastPath(app)  # the hot read skips FastAPI's routing


Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]


def listing_policy(settings: ApiSettings) -> ListingPolicy:
    """The deployment's publishing rules, from its settings."""
    return ListingPolicy(settings.api_min_votes_to_list, settings.api_preliminary_min_votes,
                         settings.api_preliminary_min_fresh_votes)


def _lifespan(settings: ApiSettings, redis_client: RedisClient | None, metrics: ApiMetrics
              ) -> Lifespan:
    """What the app holds while it serves (on ``app.state``), set up and closed in order."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        client = redis_client or connect_for_requests(settings)
        await check_topology(client)
        app.state.settings = settings
        app.state.redis = client
        app.state.reader = StandingsReader(client, settings.keys)
        app.state.registry = ModelRegistry(client, settings.keys)
        app.state.listing_policy = listing_policy(settings)
        app.state.releases = ReleaseRecords(client, settings.keys)
        app.state.samplers = next_battle.SamplerCache(client, settings.keys,
                                                      settings.api_sampling_cache_s)
        app.state.sampling_rng = np.random.default_rng()
        app.state.rendered_boards = RenderedBoards(fresh_s=settings.api_read_cache_s,
                                                   recheck_s=settings.api_read_recheck_s,
                                                   policy=app.state.listing_policy)
        changes = asyncio.create_task(BoardChanges(
            client, settings.keys.board_changes(), app.state.rendered_boards).run())
        app.state.feed = RankChangeFeed(settings.kafka_bootstrap, settings.topics.rank_changes,
                                        settings.api_stream_buffer_events)
        app.state.stream_slots = streams.StreamSlots(settings.api_stream_max_clients,
                                                     settings.api_stream_max_per_address)
        metrics.stream_clients.set_function(lambda: app.state.stream_slots.open)
        app.state.kafka_probe = KafkaProbe(settings.kafka_bootstrap)
        app.state.redis_probe = RedisProbe(settings.redis_url)
        try:
            yield
        finally:  # each step bounded: a hung close must not hold the shutdown past its grace
            changes.cancel()
            with suppress(asyncio.CancelledError):
                await _bounded("the board-changes listener", changes)
            await _bounded("the rank-change feed", app.state.feed.close())
            await _bounded("the sampler reads", app.state.samplers.close())
            await _bounded("the Kafka probe", app.state.kafka_probe.close())
            await _bounded("the Redis probe", app.state.redis_probe.close())
            if redis_client is None:
                await _bounded("the Redis client", client.aclose())

    return lifespan


def _add_ops_and_page_routes(app: FastAPI, metrics: ApiMetrics) -> None:
    """Liveness, readiness, metrics and the page."""

    @app.get("/healthz", summary="Liveness", tags=["ops"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", summary="Readiness: Redis and Kafka reachable", tags=["ops"])
    async def readyz(request: Request) -> Response:
        redis = await request.app.state.redis_probe.reachable()
        kafka = await request.app.state.kafka_probe.reachable()
        return OrjsonResponse({"redis": redis, "kafka": kafka},
                              status_code=200 if redis and kafka else 503)

    @app.get("/metrics", summary="Prometheus metrics", tags=["ops"], include_in_schema=False)
    async def prometheus_metrics() -> Response:
        return metrics_response(metrics.registry)

    page = files("services.api").joinpath("static/index.html").read_text()

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index() -> HTMLResponse:
        return HTMLResponse(page)


SHUTDOWN_STEP_S = 5.0


def end_streams(app: FastAPI) -> None:
    """End every rank-change stream now (the process is stopping): their clients resume on
    another api process by Last-Event-ID instead of waiting out the graceful stop."""
    feed: RankChangeFeed | None = getattr(app.state, "feed", None)
    if feed is not None:
        feed.end_streams()


async def _bounded(what: str, step: Awaitable[object]) -> None:
    """Await one shutdown step for at most ``SHUTDOWN_STEP_S``; log and move on after that."""
    try:
        async with asyncio.timeout(SHUTDOWN_STEP_S):
            await step
    except TimeoutError:
        log.warning("shutdown: closing %s took over %.0f s; left behind", what, SHUTDOWN_STEP_S)
