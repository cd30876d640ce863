"""Model endpoints: registry entries, a model on every board, its history, head to head."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query

from services.api.deps import Policy, Reader, Registry
from services.api.params import BoardQuery as Board
from services.api.responses import HeadToHead, History, ModelPage
from services.api.rows import labelled
from services.common.http import OrjsonResponse
from shared.events import ModelInfo
from shared.keys import board_name, split_board

router = APIRouter(tags=["models"])

ModelPath = Annotated[
    str,
    Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9._+:@/-]{0,127}$", examples=["gemini-3-pro"],
         description="Model id (may contain `/`)."),
]


@router.get("/v1/models", response_model=list[ModelInfo], summary="Every registered model")
async def list_models(registry: Registry) -> Any:
    found = await registry.all()
    return OrjsonResponse([found[k].model_dump(mode="json") for k in sorted(found)])


@router.get(
    "/v1/models/{model_id:path}/history",
    response_model=History,
    summary="A model's score, CI and rank over time on one board",
    description="Points are recorded by the rating service at every rank change of the model "
    "and at most once per `PODIUM_RATING_HISTORY_INTERVAL_S` otherwise; when the votes stop, "
    "the model's last state gets a point once that interval has passed.",
    responses={404: {"description": "No history of this model on this board."}},
)
async def get_history(
    reader: Reader,
    model_id: ModelPath,
    board: Board = "text/overall",
    limit: Annotated[int, Query(ge=1, le=5000, description="Most recent N points.")] = 1000,
) -> Any:
    arena, view = split_board(board)
    points = await reader.history(arena, view, model_id, limit)
    if not points:
        raise HTTPException(404, f"no history of {model_id!r} on {board}")
    return OrjsonResponse({"model": model_id, "board": board, "points": points})


@router.get(
    "/v1/models/{model_id:path}",
    response_model=ModelPage,
    summary="A model's registry entry and its row on every board",
    responses={404: {"description": "Neither registered nor on any board."}},
)
async def get_model(reader: Reader, registry: Registry, policy: Policy, model_id: ModelPath
                    ) -> Any:
    info = await registry.get(model_id)
    rows = []
    for arena, view in await reader.board_names():
        doc = await reader.board_doc(arena, view)
        for row in (doc or {}).get("rows", []):
            if row["model"] == model_id:
                [row] = labelled([row], {model_id: info} if info else {},
                                 board_name(arena, view), policy)
                rows.append({**row, "board": board_name(arena, view)})
                break
    if info is None and not rows:
        raise HTTPException(404, f"model {model_id!r} is neither registered nor on any board")
    return OrjsonResponse({"id": model_id, "info": info.model_dump(mode="json") if info else None,
                           "boards": rows})


@router.get(
    "/v1/matchups/{a}/{b}",
    response_model=HeadToHead,
    summary="Head to head of two models on a board",
    description="Ids containing `/` are found by trying each split of the path.",
    responses={404: {"description": "No such board, or a model is not on it."}},
)
async def head_to_head(reader: Reader, a: str, b: str, board: Board = "text/overall") -> Any:
    return await _head_to_head(reader, f"{a}/{b}", board)


@router.get("/v1/matchups/{pair:path}", include_in_schema=False)
async def head_to_head_slashed(reader: Reader, pair: str, board: Board = "text/overall") -> Any:
    return await _head_to_head(reader, pair, board)


async def _head_to_head(reader: Reader, pair: str, board: str) -> Any:
    arena, view = split_board(board)
    doc = await reader.matrices(arena, view)
    if doc is None:
        raise HTTPException(404, f"no matchups for {board}: no votes counted on it")
    index = {m: i for i, m in enumerate(doc["models"])}
    parts = pair.split("/")
    for cut in range(1, len(parts)):
        a, b = "/".join(parts[:cut]), "/".join(parts[cut:])
        if a in index and b in index:
            break
    else:
        raise HTTPException(404, f"{pair!r} does not name two models on {board}")
    if a == b:
        raise HTTPException(422, "a model has no head to head with itself")
    i, j = index[a], index[b]
    standings = await reader.board_doc(arena, view)
    by_model = {r["model"]: r for r in (standings or {}).get("rows", [])}
    battles, wins_a, wins_b = doc["battles"][i][j], doc["wins"][i][j], doc["wins"][j][i]
    return OrjsonResponse({
        "board": board, "model_a": a, "model_b": b, "battles": battles, "wins_a": wins_a,
        "wins_b": wins_b, "ties": battles - wins_a - wins_b, "win_rate_a": doc["win_rate"][i][j],
        "predicted_a": doc["predicted"][i][j],
        "score_a": by_model.get(a, {}).get("score"), "score_b": by_model.get(b, {}).get("score"),
        "rank_a": by_model.get(a, {}).get("rank"), "rank_b": by_model.get(b, {}).get("rank"),
    })
