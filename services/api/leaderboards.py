"""Board endpoints: standings with filters, matchup matrices, groups and exports."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import Response

from services.api.deps import Policy, Reader, Registry, Rendered, labelled_board
from services.api.params import ArenaParam, ViewParam
from services.api.release_routes import AtQuery, release_at, released_board
from services.api.responses import BoardList, Groups, Matchups, Standings
from services.api.rows import RowFilter, export_csv, export_json, groups, headline
from services.common.http import OrjsonResponse
from shared.keys import board_name

router = APIRouter(prefix="/v1/leaderboards", tags=["leaderboards"])
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"description": "No such board (nothing counted on it yet)."}
}

Top = Annotated[int | None, Query(ge=1, le=10_000, description="Keep the first N rows.")]
MinVotes = Annotated[int, Query(ge=0, description="Leave out models with fewer votes.")]
IncludeDeprecated = Annotated[bool, Query(
    description="Show deprecated (retired) models too; they are always in the fit.")]
IncludeUnlisted = Annotated[bool, Query(
    description="Show models below the listing threshold (`PODIUM_API_MIN_VOTES_TO_LIST`) too.")]


@router.get("", response_model=BoardList, summary="All boards and their sizes")
async def list_boards(reader: Reader) -> Any:
    return OrjsonResponse({"boards": await reader.boards()})


@router.get(
    "/{arena}/{view}",
    response_model=Standings,
    summary="Live standings of one board, with filters",
    description="Columns as LMArena shows them: rank, rank_ub (rank upper bound), score, "
    "95% CI, votes, preliminary; plus the registry facts of each model. `rank` and `rank_ub` "
    "are on the whole board; `position` is the place among the filtered rows. The default "
    "view leaves out deprecated models and models below the listing threshold (both stay in "
    "the fit); each row says `deprecated`, `listed`, `preliminary` and `why`. With `at`, the "
    "board as a release published it (time travel; the release is named in `release`).",
    responses={404: {"description": "No such board (nothing counted on it yet); with `at`: "
                     "no such release of it, or none at or before that time."}},
)
async def get_board(
    request: Request,
    reader: Reader,
    registry: Registry,
    rendered: Rendered,
    arena: ArenaParam,
    view: ViewParam,
    organization: Annotated[str | None, Query(max_length=200, examples=["Google"])] = None,
    country: Annotated[str | None, Query(pattern=r"^[A-Za-z]{2}$", examples=["CN"])] = None,
    license: Annotated[Literal["open", "proprietary"] | None, Query()] = None,
    preview: Annotated[bool | None, Query(description="Only previews (true) or not.")] = None,
    min_votes: MinVotes = 0,
    top: Top = None,
    include_deprecated: IncludeDeprecated = False,
    include_unlisted: IncludeUnlisted = False,
    at: AtQuery = None,
) -> Any:
    filters = RowFilter(organization, country, license, preview, min_votes, top,
                        include_deprecated, include_unlisted)
    if at is not None:
        release = await release_at(request.app.state.releases, board_name(arena, view), at)
        return OrjsonResponse(released_board(release, filters))
    body = await rendered.body(reader, registry, arena, view, filters, filters.render)
    return Response(body, media_type="application/json")


@router.get(
    "/{arena}/{view}/matchups",
    response_model=Matchups,
    summary="Win-rate matrix and predicted win probabilities",
    description="Written by the rating service after its refits, at most once per "
    "`PODIUM_RATING_MATRICES_INTERVAL_S` and at most that long after the board's last refit "
    "(also when the votes stop); models in rank order. "
    "`top` keeps the best N models. Benchmark boards have no matchups.",
    responses=NOT_FOUND,
)
async def get_matchups(reader: Reader, arena: ArenaParam, view: ViewParam, top: Top = None
                       ) -> Any:
    doc = await reader.matrices(arena, view)
    if doc is None:
        raise HTTPException(404, f"no matchups for {arena}/{view}: no votes counted on it")
    if top is not None:
        n = top
        doc["models"] = doc["models"][:n]
        for name in ("win_rate", "predicted", "battles", "wins"):
            doc[name] = [row[:n] for row in doc[name][:n]]
    return OrjsonResponse(doc)


def _groups_endpoint(by: Literal["organization", "country"]) -> Any:
    async def endpoint(
        reader: Reader,
        registry: Registry,
        policy: Policy,
        arena: ArenaParam,
        view: ViewParam,
        top: Annotated[int, Query(ge=1, le=10_000, description="Size of the top.")] = 10,
        min_votes: MinVotes = 0,
        include_deprecated: IncludeDeprecated = False,
        include_unlisted: IncludeUnlisted = False,
    ) -> Any:
        doc, _ = await labelled_board(reader, registry, arena, view, policy)
        rows = RowFilter(min_votes=min_votes, include_deprecated=include_deprecated,
                         include_unlisted=include_unlisted).apply(doc["rows"])
        found = groups(rows, by, top)
        return OrjsonResponse({"board": doc["board"], "by": by, "top": top, "groups": found,
                               "headline": headline(found, top)})

    return endpoint


router.add_api_route(
    "/{arena}/{view}/organizations", _groups_endpoint("organization"), methods=["GET"],
    response_model=Groups, responses=NOT_FOUND,
    summary="Best rank per organization and its places in the top N",
)
router.add_api_route(
    "/{arena}/{view}/countries", _groups_endpoint("country"), methods=["GET"],
    response_model=Groups, responses=NOT_FOUND,
    summary='Best rank per country and its places in the top N ("CN models hold 5 of the top 10")',
)


@router.get(
    "/{arena}/{view}/export",
    summary="Export a board as JSON (LMArena's published shape) or CSV",
    responses={
        200: {
            "description": "JSON `{board: {model: {rating, rating_q025, rating_q975}}}` or CSV.",
            "content": {
                "application/json": {"example": {"text/overall": {"gemini-3-pro": {
                    "rating": 1492.3, "rating_q025": 1486.1, "rating_q975": 1498.4}}}},
                "text/csv": {"example": "rank,rank_ub,model,...\n1,1,gemini-3-pro,...\n"},
            },
        },
        **NOT_FOUND,
    },
)
async def export_board(
    reader: Reader,
    registry: Registry,
    policy: Policy,
    arena: ArenaParam,
    view: ViewParam,
    format: Annotated[Literal["json", "csv"], Query()] = "json",
    include_deprecated: IncludeDeprecated = False,
    include_unlisted: IncludeUnlisted = False,
) -> Response:
    doc, _ = await labelled_board(reader, registry, arena, view, policy)
    doc["rows"] = RowFilter(include_deprecated=include_deprecated,
                            include_unlisted=include_unlisted).apply(doc["rows"])
    board = board_name(arena, view)
    if format == "csv":
        filename = board.replace("/", "-").replace(":", "_")
        return Response(export_csv(doc["rows"]), media_type="text/csv; charset=utf-8",
                        headers={"content-disposition": f'attachment; filename="{filename}.csv"'})
    return OrjsonResponse(export_json(board, doc["rows"]))
