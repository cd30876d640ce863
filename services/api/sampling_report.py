"""``GET /v1/leaderboards/{arena}/{view}/sampling``: how battles were shared out on a board.

Per model, per organization and per license (open / proprietary): battles so far and their
share of appearances, against what a uniform policy gives (1 / models) and what the arena's
policy gives now (the worker's sampler); and the votes that brought sampling tokens, tallied by
policy (``KeyLayout.sampling_tally``), so that an auditor sees which policy produced which
votes. All time, and over the recent window (``sampling_window_s``, to the hour): the rating
worker's apply counts each battle into an hourly bucket of the time ingest received the vote
(``KeyLayout.sampling_recent``); the report sums the buckets the window covers."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

from fastapi import APIRouter, Request

from services.api.deps import Policy, Reader, Registry, labelled_board
from services.api.next_battle import SamplerCache
from services.api.params import ArenaParam, ViewParam
from services.common.http import OrjsonResponse
from services.common.redis_client import RedisClient
from shared.generations import active_layout
from shared.keys import FIELD_SEP, SAMPLING_BUCKET_S, STYLE_SUFFIX, KeyLayout, text
from shared.settings import ApiSettings

router = APIRouter(prefix="/v1/leaderboards", tags=["sampling"])


def _shares(rows: list[dict[str, Any]], policy_share: dict[str, float],
            key: str | None, battles: Mapping[str, int] | None = None) -> list[dict[str, Any]]:
    """Battles, share, uniform share and the policy's share per model (``key`` None) or per
    value of a row field (organization, license), most battles first. Battles of a model are
    its row's votes (all time), or ``battles`` of it when given (the recent window)."""
    def battles_of(row: dict[str, Any]) -> int:
        return int(row["votes"]) if battles is None else battles.get(row["model"], 0)

    appearances = sum(battles_of(r) for r in rows) or 1
    groups: dict[str, dict[str, Any]] = defaultdict(lambda: {
        "battles": 0, "models": 0, "policy_share": 0.0})
    for row in rows:
        name = row["model"] if key is None else (row.get(key) or "unknown")
        group = groups[str(name)]
        group["battles"] += battles_of(row)
        group["models"] += 1
        group["policy_share"] += policy_share.get(row["model"], 0.0)
    out = []
    for name, group in groups.items():
        out.append({"name": name, "models": group["models"], "battles": group["battles"],
                    "share": round(group["battles"] / appearances, 6),
                    "uniform_share": round(group["models"] / max(len(rows), 1), 6),
                    "policy_share": round(group["policy_share"], 6)})
    return sorted(out, key=lambda g: (-g["battles"], g["name"]))


def _tally(raw: dict[Any, Any], view: str) -> dict[str, dict[str, int]]:
    by_policy: dict[str, int] = {}
    unsampled: dict[str, int] = {}
    for field, count in raw.items():
        first, _, second = text(field).rpartition(FIELD_SEP)
        if first == view:
            by_policy[second] = int(count)
        elif first == "unsampled":
            unsampled[second] = int(count)
    return {"by_policy": by_policy, "unsampled_arena": unsampled}


def window_buckets(window_s: int, now: float) -> range:
    """The hourly buckets the recent window covers at ``now``: the one holding ``now - window_s``
    through the current one (so the window is ``window_s``, to the hour)."""
    return range(int(now - window_s) // SAMPLING_BUCKET_S, int(now) // SAMPLING_BUCKET_S + 1)


async def recent_battles(client: RedisClient, keys: KeyLayout, arena: str, view: str,
                         buckets: range) -> dict[str, int]:
    """model -> battles of the view it appeared in, over some hourly buckets (one round trip).
    A style-controlled view has its plain view's battles."""
    plain = view.removesuffix(STYLE_SUFFIX)
    async with client.pipeline(transaction=False) as pipe:
        for bucket in buckets:
            pipe.hgetall(keys.sampling_recent(arena, plain, bucket))
        replies = await pipe.execute()
    out: dict[str, int] = defaultdict(int)
    for reply in replies:
        for model, n in reply.items():
            out[text(model)] += int(n)
    return dict(out)


def _recent(rows: list[dict[str, Any]], shares: dict[str, float], battles: dict[str, int],
            window_s: int, buckets: range) -> dict[str, Any]:
    """The report's ``recent`` block: the window, and battles and shares over it."""
    return {
        "window_s": window_s,
        "since": buckets.start * SAMPLING_BUCKET_S,
        "battles": sum(battles.values()) // 2,
        "models": _shares(rows, shares, None, battles),
        "organizations": _shares(rows, shares, "organization", battles),
        "licenses": _shares(rows, shares, "license", battles),
    }


def _policy_shares(models: Iterable[str], shares: Iterable[float]) -> dict[str, float]:
    return dict(zip(models, shares, strict=True))


@router.get(
    "/{arena}/{view}/sampling",
    summary="Battles and share per model, organization and license against uniform sampling",
    description="All time, and in `recent` over the last `sampling_window_s` seconds, to the "
    "hour (`since`: unix time the window starts; votes count by when ingest received them). "
    "`share`: of all appearances on the board (in the window, for `recent`); "
    "`uniform_share`: what a uniform policy gives (models / all models); "
    "`policy_share`: what the arena's next-battle policy gives now. `tokens.by_policy`: the "
    "board's votes that brought a verified sampling token, per policy; "
    "`tokens.unsampled_arena`: the arena's votes whose token was refused, by why.",
    responses={404: {"description": "No such board (nothing counted on it yet)."}},
)
async def sampling_report(request: Request, reader: Reader, registry: Registry,
                          policy_of_rows: Policy, arena: ArenaParam, view: ViewParam) -> Any:
    doc, _ = await labelled_board(reader, registry, arena, view, policy_of_rows)
    settings: ApiSettings = request.app.state.settings
    policy = settings.api_sampling_policy.get(arena, settings.api_sampling_default_policy)
    cache: SamplerCache = request.app.state.samplers
    sampler = await cache.sampler(arena, view, policy)
    shares = ({} if sampler is None
              else _policy_shares(sampler.models, sampler.model_shares().tolist()))
    rows = doc["rows"]
    client: RedisClient = request.app.state.redis
    tally = await client.hgetall(settings.keys.sampling_tally(arena))
    buckets = window_buckets(settings.sampling_window_s, time.time())
    recent = await recent_battles(client, await active_layout(client, settings.keys), arena,
                                  view, buckets)
    return OrjsonResponse({
        "board": doc["board"], "policy": policy, "battles": doc["votes"],
        "models": _shares(rows, shares, None),
        "organizations": _shares(rows, shares, "organization"),
        "licenses": _shares(rows, shares, "license"),
        "recent": _recent(rows, shares, recent, settings.sampling_window_s, buckets),
        "tokens": _tally(tally, view),
    })
