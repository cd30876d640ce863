"""Releases and time travel (read side): list a board's releases, read one, export it in
LMArena's shape, diff two, the board as it stood (``?at=`` on the board route), and the
"leaderboard over time" series. Releases are published by ingest's admin API
(shared/releases.py, services/common/release_records.py)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from services.api.params import ArenaParam, BoardQuery, ViewParam
from services.api.rows import RowFilter, export_csv, labelled
from services.common.http import OrjsonResponse
from services.common.release_records import ReleaseRecords
from shared.keys import board_name
from shared.releases import (
    RELEASE_ID_PATTERN,
    Release,
    ReleaseDiff,
    ReleaseSummary,
    diff,
    latest_at,
    lmarena_json,
    newest_first,
    parse_instant,
)

router = APIRouter(tags=["releases"])

# a release id, or an ISO 8601 date or time (a "+" of an offset may arrive as a space)
AT_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:+ -]{0,127}$"
AtQuery = Annotated[str | None, Query(
    pattern=AT_PATTERN, examples=["text.overall.20261201T000000Z", "2026-12-01T12:00:00Z"],
    description="Time travel: a release id of this board, or an ISO 8601 date or time (the "
    "board as its latest release at or before it published it; a time without offset is "
    "UTC). The response is that release's standings, labelled with the registry entries it "
    "recorded, with `release` saying which. 404 for an unknown release or a time before the "
    "board's first release.")]
ReleasePath = Annotated[str, Path(pattern=RELEASE_ID_PATTERN,
                                  examples=["text.overall.20261201T000000Z"])]
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "No such release."}}


class ReleaseList(BaseModel):
    releases: list[ReleaseSummary] = Field(description="Newest first.")


class SeriesPoint(BaseModel):
    release: str
    published_at: str
    rank: int
    score: float
    ci_low: float
    ci_high: float


class Series(BaseModel):
    model: str
    display_name: str | None
    points: list[SeriesPoint] = Field(description="Oldest first; only releases listing it.")


class OverTime(BaseModel):
    board: str
    top: int
    releases: list[ReleaseSummary] = Field(description="Oldest first.")
    series: list[Series] = Field(description="The top N of the latest release (by rank), "
                                 "each across every release that lists it.")


async def _store(request: Request) -> ReleaseRecords:
    store: ReleaseRecords = request.app.state.releases
    return store


Releases = Annotated[ReleaseRecords, Depends(_store)]


async def release_or_404(store: ReleaseRecords, release_id: str) -> Release:
    release = await store.get(release_id)
    if release is None:
        raise HTTPException(404, f"no release {release_id!r}")
    return release


async def release_at(store: ReleaseRecords, board: str, at: str) -> Release:
    """The release ``at`` names for ``board``: one of that id, else the latest published at or
    before ``at`` read as a date or time. 404 with what is wrong otherwise."""
    release = await store.get(at)
    if release is not None and release.board == board:
        return release
    when = parse_instant(at)
    if when is None:  # (an id that reads as a date, of another board: the date is meant)
        if release is not None:
            raise HTTPException(404, f"release {at!r} is of board {release.board}, not {board}")
        raise HTTPException(404, f"no release {at!r} (and it is not an ISO 8601 date or time)")
    summaries = await store.summaries(board)
    if not summaries:
        raise HTTPException(404, f"board {board} has no releases (publish one: POST "
                            "/v1/admin/releases on ingest)")
    found = latest_at(summaries, when)
    if found is None:
        first = newest_first(summaries)[-1]
        raise HTTPException(404, f"no release of {board} at or before {when.isoformat()}: "
                            f"its first, {first.id!r}, was published {first.published_at}")
    return await release_or_404(store, found.id)


def standings_doc(release: Release) -> dict[str, Any]:
    """The release's standings document as the rating service wrote it, as a dict."""
    doc: dict[str, Any] = orjson.loads(release.standings.to_json())
    return doc


def released_board(release: Release, filters: RowFilter) -> dict[str, Any]:
    """The board as the release holds it, in the live board's shape: rows labelled with the
    registry entries the release recorded, the request's filters applied, and ``release``."""
    doc = standings_doc(release)
    doc["rows"] = filters.apply(labelled(doc["rows"], release.registry))
    doc["release"] = release.summary().model_dump()
    return doc


@router.get("/v1/releases", response_model=ReleaseList,
            summary="Published releases (of one board, or all), newest first")
async def list_releases(store: Releases, board: BoardQuery | None = None) -> Any:
    found = newest_first(await store.summaries(board))
    return OrjsonResponse({"releases": [s.model_dump() for s in found]})


@router.get("/v1/releases/{release_id}", response_model=Release, responses=NOT_FOUND,
            summary="One release: the board's standings as published, its models' registry "
            "entries and the methodology settings")
async def get_release(store: Releases, release_id: ReleasePath) -> Any:
    release = await release_or_404(store, release_id)
    return Response(release.to_json(), media_type="application/json")


@router.get(
    "/v1/releases/{release_id}/export",
    summary="Export a release in LMArena's JSON shape, or CSV",
    responses={
        200: {"description": "JSON `{board: {model: {rating, rating_q025, rating_q975, "
              "num_battles, final_ranking}}}` (docs/api.md, the mapping) or CSV.",
              "content": {"application/json": {"example": {"text/overall": {"gemini-3-pro": {
                  "rating": 1492.3, "rating_q025": 1486.1, "rating_q975": 1498.4,
                  "num_battles": 41230, "final_ranking": 1}}}},
                  "text/csv": {"example": "rank,rank_ub,model,...\n1,1,gemini-3-pro,...\n"}}},
        **NOT_FOUND,
    },
)
async def export_release(store: Releases, release_id: ReleasePath,
                         format: Annotated[Literal["json", "csv"], Query()] = "json"
                         ) -> Response:
    release = await release_or_404(store, release_id)
    rows = labelled(standings_doc(release)["rows"], release.registry)
    if format == "csv":
        return Response(export_csv(rows), media_type="text/csv; charset=utf-8",
                        headers={"content-disposition":
                                 f'attachment; filename="{release.id}.csv"'})
    return OrjsonResponse(lmarena_json(release.board, rows))


@router.get(
    "/v1/releases/{from_id}/diff/{to_id}", response_model=ReleaseDiff,
    summary="What changed between two releases of a board",
    description="Who moved and by how much (rank and score), new and retired models. "
    "`from_id` is the earlier one as you mean it; the diff is from it to `to_id`.",
    responses={**NOT_FOUND, 422: {"description": "The releases are of different boards."}},
)
async def diff_releases(store: Releases, from_id: ReleasePath, to_id: ReleasePath) -> Any:
    older = await release_or_404(store, from_id)
    newer = await release_or_404(store, to_id)
    if older.board != newer.board:
        raise HTTPException(422, f"release {from_id!r} is of {older.board} and {to_id!r} of "
                            f"{newer.board}: a diff compares two releases of one board")
    return Response(diff(older, newer).model_dump_json(), media_type="application/json")


@router.get(
    "/v1/leaderboards/{arena}/{view}/releases", response_model=OverTime,
    summary="The leaderboard over time: the top N's scores and CIs across the releases",
    description="The board's latest `last` releases, oldest first; the top `top` models of "
    "the latest one, each with its rank, score and CI in every one of them that lists it.",
    responses={404: {"description": "The board has no releases."}},
)
async def over_time(
    store: Releases, arena: ArenaParam, view: ViewParam,
    top: Annotated[int, Query(ge=1, le=100, description="Models followed.")] = 10,
    last: Annotated[int, Query(ge=1, le=366, description="The latest N releases.")] = 50,
) -> Any:
    board = board_name(arena, view)
    summaries = newest_first(await store.summaries(board))[:last][::-1]
    if not summaries:
        raise HTTPException(404, f"board {board} has no releases")
    releases = [await release_or_404(store, s.id) for s in summaries]
    followed = [r.model for r in releases[-1].standings.rows[:top]]
    series = []
    for model in followed:
        points = [SeriesPoint(release=rel.id, published_at=rel.published_at, rank=row.rank,
                              score=row.score, ci_low=row.ci_low, ci_high=row.ci_high)
                  for rel in releases for row in rel.standings.rows if row.model == model]
        info = releases[-1].registry.get(model)
        series.append(Series(model=model, display_name=info.display_name if info else None,
                             points=points))
    body = OverTime(board=board, top=top, releases=summaries, series=series)
    return Response(body.model_dump_json(), media_type="application/json")
