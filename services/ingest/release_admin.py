"""Publishing board releases: the admin endpoint (``POST /v1/admin/releases``) and the schedule
(``PODIUM_INGEST_RELEASE_EVERY_S``). A release snapshots the board's live standings document,
the registry entries of its models and the rating worker's methodology settings
(shared/releases.py), written to the releases topic, then Redis
(services/common/release_records.py)."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Body, Depends, HTTPException, Request, status
from pydantic import BaseModel, Field

from services.common.records import RecordUnavailable
from services.common.redis_client import REDIS_RETRYABLE, RedisClient
from services.common.registry import ModelRegistry
from services.common.release_records import ReleaseRecords, ReleaseTooLarge
from services.ingest.client_keys import admin_auth
from services.ingest.defence_admin import ADMIN_ERRORS
from shared.generations import active_layout
from shared.keys import KeyLayout, board_name, split_board, text
from shared.releases import Release, ReleaseId, ReleaseSummary, release_id
from shared.settings import BOARD_PATTERN, IngestSettings
from shared.standings import StoredStandings

log = logging.getLogger(__name__)
SCHEDULE_RETRYABLE: tuple[type[Exception], ...] = (*REDIS_RETRYABLE, RecordUnavailable)


class NewRelease(BaseModel):
    board: str = Field(pattern=BOARD_PATTERN, description="`arena/view` to publish.",
                       examples=["text/overall"])
    id: ReleaseId | None = Field(default=None, description="The release's id (default "
                                 "`{arena}.{view}.{YYYYmmddTHHMMSSZ}` of the publish time); "
                                 "an id that exists is refused (409): releases are immutable.")
    note: str | None = Field(default=None, max_length=1000, description="Shown with it.")


class NoMethodology(Exception):
    """The rating worker has not written its methodology into Redis (yet, or since a wipe)."""


class NoBoard(Exception):
    """Nothing has been counted on the board."""


async def snapshot(client: RedisClient, keys: KeyLayout, registry: ModelRegistry, board: str,
                   rid: str, published_at: datetime, note: str | None = None) -> Release:
    """The release of ``board`` as it stands now. Raises NoBoard, NoMethodology."""
    arena, view = split_board(board)
    raw = await client.get((await active_layout(client, keys)).standings(arena, view))
    if raw is None:
        raise NoBoard(board)
    standings = StoredStandings.model_validate_json(raw)
    found = await client.get(keys.methodology())
    if found is None:
        raise NoMethodology(board)
    models = await registry.all()
    facts = {r.model: models[r.model] for r in standings.rows if r.model in models}
    return Release(id=rid, board=board, published_at=published_at.isoformat(), note=note,
                   methodology=orjson.loads(found), standings=standings, registry=facts)


def release_router(settings: IngestSettings) -> APIRouter:
    router = APIRouter(prefix="/v1/admin", tags=["admin"],
                       dependencies=[Depends(admin_auth(settings))])

    @router.post(
        "/releases", status_code=201, response_model=ReleaseSummary,
        summary="Publish a dated, immutable release of a board",
        description="Snapshots the board's live standings, the registry entries of its models "
        "and the rating worker's methodology settings; written to the releases topic (its "
        "system of record) before Redis. Read it on the api: `GET /v1/releases/{id}`, "
        "`GET /v1/leaderboards/{arena}/{view}?at={id}`.",
        responses={**ADMIN_ERRORS,
                   404: {"description": "No such board (nothing counted on it yet)."},
                   409: {"description": "A release with this id exists."},
                   422: {"description": "Invalid body, or the board is too large for one "
                         "release record."},
                   503: {"description": "Kafka did not acknowledge, or the rating worker's "
                         "methodology is not in Redis yet; retry."}},
    )
    async def publish_release(
        request: Request,
        new: Annotated[NewRelease, Body(examples=[{"board": "text/overall",
                                                   "note": "December 2026"}])],
    ) -> ReleaseSummary:
        now = datetime.now(UTC)
        rid = new.id or release_id(new.board, now)
        releases: ReleaseRecords = request.app.state.releases
        if await releases.exists(rid):
            raise HTTPException(409, f"release {rid!r} exists; releases are immutable: "
                                "publish under another id")
        try:
            release = await snapshot(request.app.state.redis, settings.keys,
                                     request.app.state.registry, new.board, rid, now, new.note)
        except NoBoard as exc:
            raise HTTPException(404, f"no board {new.board}: nothing has been counted on it"
                                ) from exc
        except NoMethodology as exc:
            raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "the rating worker has "
                                "not written its methodology settings yet; retry",
                                headers={"Retry-After": "2"}) from exc
        try:
            written = await releases.publish(release)
        except RecordUnavailable as exc:
            raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE,
                                "Kafka did not acknowledge; retry the publish",
                                headers={"Retry-After": "1"}) from exc
        except ReleaseTooLarge as exc:
            raise HTTPException(422, f"{exc} (docs/operations.md, Releases)") from exc
        if not written:
            raise HTTPException(409, f"release {rid!r} exists (or is being published); "
                                "releases are immutable: publish under another id")
        return release.summary()

    return router


async def scheduled_boards(client: RedisClient, keys: KeyLayout, wanted: list[str]
                           ) -> list[str]:
    """The boards a scheduled release covers: ``wanted``, or every board when empty."""
    if wanted:
        return wanted
    live = await active_layout(client, keys)
    boards = []
    for arena in sorted(text(a) for a in await client.smembers(live.arenas())):
        views = sorted(text(v) for v in await client.smembers(live.views(arena)))
        boards += [board_name(arena, v) for v in views]
    return boards


async def publish_on_schedule(app: Any, settings: IngestSettings) -> None:
    """Every ``ingest_release_every_s``, at the multiples of it (UTC), a release of each
    scheduled board, published at that instant: its id is the same on every ingest replica,
    so one of them publishes it and the others find it taken."""
    every = settings.ingest_release_every_s
    while True:
        now = datetime.now(UTC).timestamp()
        slot = (now // every + 1) * every
        await asyncio.sleep(slot - now)
        try:
            await publish_slot(app, settings, datetime.fromtimestamp(slot, UTC))
        except SCHEDULE_RETRYABLE as exc:
            log.warning("scheduled releases not published (%r); next slot", exc)
        except Exception:  # a bug must not stop the schedule for good
            log.exception("scheduled releases failed; next slot")


async def publish_slot(app: Any, settings: IngestSettings, at: datetime) -> list[str]:
    """The scheduled releases of one slot; returns the ids this process published."""
    client: RedisClient = app.state.redis
    releases: ReleaseRecords = app.state.releases
    published = []
    for board in await scheduled_boards(client, settings.keys, settings.ingest_release_boards):
        rid = release_id(board, at)
        if await releases.exists(rid):
            continue
        try:
            release = await snapshot(client, settings.keys, app.state.registry, board, rid, at,
                                     "scheduled")
        except (NoBoard, NoMethodology) as exc:
            log.warning("scheduled release of %s skipped: %s", board, type(exc).__name__)
            continue
        try:
            if await releases.publish(release):
                published.append(rid)
        except ReleaseTooLarge as exc:
            log.error("scheduled release of %s skipped: %s", board, exc)
    if published:
        log.info("published %d scheduled releases: %s", len(published), ", ".join(published))
    return published
