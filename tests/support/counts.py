"""What the rating state must be: per-board pair counts expected from acknowledged votes, and
what Redis holds in the live generation."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

import orjson

from services.common.redis_client import RedisClient
from services.rating.packed_counts import decode_board, names_by_number
from shared.events import Vote
from shared.generations import active_layout
from shared.keys import KeyLayout, count_field

BoardCounts = dict[str, Counter[str]]  # "arena/view" -> counts field -> n


def expected_counts(votes: Iterable[Mapping[str, Any]]) -> BoardCounts:
    out: BoardCounts = {}
    for raw in votes:
        vote = Vote.model_validate(raw)
        if not vote.anonymous:
            continue
        field = count_field(vote.model_a, vote.model_b, vote.winner)
        for view in vote.views():
            out.setdefault(f"{vote.arena}/{view}", Counter())[field] += 1
    return out


async def stored_counts(client: RedisClient, base: KeyLayout) -> BoardCounts:
    keys = await active_layout(client, base)
    out: BoardCounts = {}
    for arena in sorted(a.decode() for a in await client.smembers(keys.arenas())):
        for view in sorted(v.decode() for v in await client.smembers(keys.views(arena))):
            out[f"{arena}/{view}"] = await board_counts(client, keys, arena, view)
    return out


async def board_counts(client: RedisClient, keys: KeyLayout, arena: str,
                       view: str) -> Counter[str]:
    """One board's stored counts, decoded, by count field (``a|b|outcome``, a < b)."""
    async with client.pipeline(transaction=True) as pipe:  # index and cells of one moment
        pipe.hgetall(keys.model_index(arena))
        pipe.get(keys.counts(arena, view))
        index, raw = await pipe.execute()
    counts = decode_board(names_by_number(index), raw)
    return Counter({count_field(a, b, o): n  # type: ignore[arg-type]
                    for (a, b, o), n in counts.triples().items()})


async def standings(client: RedisClient, keys: KeyLayout) -> dict[str, Any]:
    """Every board's standings document in one key space ("arena/view" -> document)."""
    out: dict[str, Any] = {}
    for arena in sorted(a.decode() for a in await client.smembers(keys.arenas())):
        for view in sorted(v.decode() for v in await client.smembers(keys.views(arena))):
            raw = await client.get(keys.standings(arena, view))
            if raw is not None:
                out[f"{arena}/{view}"] = orjson.loads(raw)
    return out


def assert_same_standings(live: Mapping[str, Any], rebuilt: Mapping[str, Any],
                          tol: float = 1e-9) -> None:
    """Every board, every model: counts equal, scores/CIs/Elo within ``tol``."""
    assert sorted(live) == sorted(rebuilt)
    for board, doc in live.items():
        other = rebuilt[board]
        assert doc["votes"] == other["votes"], board
        rows = {r["model"]: r for r in doc["rows"]}
        other_rows = {r["model"]: r for r in other["rows"]}
        assert sorted(rows) == sorted(other_rows), board
        for model, row in rows.items():
            o = other_rows[model]
            for exact in ("votes", "wins", "losses", "ties", "rank", "rank_ub", "preliminary"):
                assert row[exact] == o[exact], (board, model, exact, row[exact], o[exact])
            for num in ("score", "ci_low", "ci_high", "elo"):
                assert abs(row[num] - o[num]) <= tol, (board, model, num, row[num], o[num])


async def wait_for_counts(client: RedisClient, base: KeyLayout, want: BoardCounts,
                          timeout: float) -> None:
    """Wait until the live counts equal ``want`` exactly; on timeout, say how they differ."""
    deadline = time.monotonic() + timeout
    while True:
        got = await stored_counts(client, base)
        if got == want:
            return
        if time.monotonic() > deadline:
            difference = describe_difference(got, want)
            raise AssertionError(f"counts differ after {timeout}s: {difference}")
        await asyncio.sleep(0.25)


def describe_difference(got: BoardCounts, want: BoardCounts) -> str:
    lines = []
    for board in sorted(set(got) | set(want)):
        g, w = got.get(board, Counter()), want.get(board, Counter())
        if g != w:
            over = (g - w).total()
            under = (w - g).total()
            lines.append(f"{board}: {g.total()} stored, {w.total()} expected "
                         f"({over} too many, {under} missing)")
    return "; ".join(lines[:6])
