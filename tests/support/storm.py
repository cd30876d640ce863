"""Storms: many requests fired at once over real sockets (one connection each), their answers
sorted, and a readiness probe polled meanwhile. Shared by tests/e2e/test_storm.py and
bench/storm_bench.py."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson

from services.demo.arena import SyntheticArena

BOGUS_KEY = "pdm_" + "x" * 43  # the shape of a real key, registered nowhere
NDJSON = "application/x-ndjson"


@dataclass(frozen=True)
class Shot:
    """One request of a storm; ``votes``: the valid votes it carries (counted once accepted)."""

    kind: str
    method: str
    url: str
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    votes: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True)
class Outcome:
    shot: Shot
    status: int  # 0: no answer (the connection failed or timed out)
    retry_after: str | None = None
    error: str = ""

    @property
    def acceptable(self) -> bool:
        """What a storm may answer: 2xx, 3xx, 4xx (429 included), or 503 with Retry-After."""
        if 200 <= self.status < 500:
            return True
        return self.status == 503 and self.retry_after is not None


async def fire(shots: Sequence[Shot], timeout_s: float = 120.0) -> list[Outcome]:
    """Send every shot at once, each on its own connection; the answers in order."""
    connector = aiohttp.TCPConnector(limit=0, force_close=True)  # one connection a request
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        go = asyncio.Event()

        async def one(shot: Shot) -> Outcome:
            await go.wait()
            try:
                async with session.request(shot.method, shot.url, data=shot.body,
                                           headers=shot.headers) as response:
                    await response.read()
                    return Outcome(shot, response.status, response.headers.get("Retry-After"))
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                return Outcome(shot, 0, error=repr(exc))

        tasks = [asyncio.create_task(one(shot)) for shot in shots]
        await asyncio.sleep(0)  # every task is now waiting for the signal
        go.set()
        return await asyncio.gather(*tasks)


def tally(outcomes: Sequence[Outcome]) -> dict[str, Counter[int]]:
    """Statuses by kind of request."""
    out: dict[str, Counter[int]] = {}
    for o in outcomes:
        out.setdefault(o.shot.kind, Counter())[o.status] += 1
    return out


def unacceptable(outcomes: Sequence[Outcome]) -> list[str]:
    """What no storm may produce (5xx other than 503 + Retry-After, or no answer), described."""
    return [f"{o.shot.kind} {o.shot.method} {o.shot.url}: {o.status} {o.error}"
            for o in outcomes if not o.acceptable]


@contextlib.asynccontextmanager
async def polling_ready(url: str) -> AsyncIterator[list[int]]:
    """Polls ``url`` (a /readyz) back to back while the block runs: the statuses seen (0: no
    answer within 30 s)."""
    seen: list[int] = []
    stop = asyncio.Event()

    async def poll() -> None:
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while not stop.is_set():
                try:
                    async with session.get(url) as response:
                        await response.read()
                        seen.append(response.status)
                except (aiohttp.ClientError, TimeoutError, OSError):
                    seen.append(0)
                with contextlib.suppress(TimeoutError):  # a pause between polls
                    await asyncio.wait_for(stop.wait(), 0.05)

    task = asyncio.create_task(poll())
    try:
        yield seen
    finally:
        stop.set()
        await task


def vote_source(seed: int, arena: str = "text") -> SyntheticArena:
    return SyntheticArena(arena=arena, seed=seed)


def single_vote(base: str, vote: dict[str, Any], api_key: str | None, kind: str) -> Shot:
    headers = {"content-type": "application/json"}
    if api_key is not None:
        headers["x-api-key"] = api_key
    counted = (vote,) if api_key is not None and api_key != BOGUS_KEY else ()
    return Shot(kind, "POST", f"{base}/v1/votes", orjson.dumps(vote), headers, counted)


def vote_batch(base: str, votes: list[dict[str, Any]], api_key: str | None, kind: str) -> Shot:
    headers = {"content-type": NDJSON}
    if api_key is not None:
        headers["x-api-key"] = api_key
    counted = tuple(votes) if api_key is not None and api_key != BOGUS_KEY else ()
    body = b"\n".join(orjson.dumps(v) for v in votes)
    return Shot(kind, "POST", f"{base}/v1/votes/batch", body, headers, counted)


def get(base: str, path: str, kind: str) -> Shot:
    return Shot(kind, "GET", f"{base}{path}")


def ingest_storm(base: str, api_key: str, size: int, seed: int) -> list[Shot]:
    """``size`` requests to ingest: a quarter unauthenticated batches (a key registered
    nowhere), a tenth unauthenticated single votes, a twentieth without any key, a third valid
    single votes, a tenth valid batches of 5, the rest liveness and readiness reads."""
    votes = vote_source(seed)
    shots: list[Shot] = []
    parts = [("bogus-batch", size // 4), ("bogus-vote", size // 10), ("keyless-vote", size // 20),
             ("valid-vote", size // 3), ("valid-batch", size // 10)]
    for kind, n in parts:
        for _ in range(n):
            if kind == "bogus-batch":
                shots.append(vote_batch(base, list(votes.votes(3)), BOGUS_KEY, kind))
            elif kind == "bogus-vote":
                shots.append(single_vote(base, votes.vote(), BOGUS_KEY, kind))
            elif kind == "keyless-vote":
                shots.append(single_vote(base, votes.vote(), None, kind))
            elif kind == "valid-vote":
                shots.append(single_vote(base, votes.vote(), api_key, kind))
            else:
                shots.append(vote_batch(base, list(votes.votes(5)), api_key, kind))
    while len(shots) < size:
        shots.append(get(base, "/readyz" if len(shots) % 2 else "/healthz", "probe"))
    return interleaved(shots)


def api_storm(base: str, models: Sequence[str], size: int, arena: str = "text") -> list[Shot]:
    """``size`` reads of the api, spread over its Redis-backed routes (and the fast path)."""
    paths = [
        ("model", lambda i: f"/v1/models/{models[i % len(models)]}"),
        ("history", lambda i: f"/v1/models/{models[i % len(models)]}/history"),
        ("matchup", lambda i: f"/v1/matchups/{models[i % len(models)]}/"
                              f"{models[(i + 1) % len(models)]}"),
        ("boards", lambda i: "/v1/leaderboards"),
        ("matchups", lambda i: f"/v1/leaderboards/{arena}/overall/matchups"),
        ("board", lambda i: f"/v1/leaderboards/{arena}/overall"),  # the fast path
        ("board-top", lambda i: f"/v1/leaderboards/{arena}/overall?top=5"),
        ("models", lambda i: "/v1/models"),
    ]
    shots = [get(base, path(i), kind) for i in range(size)
             for kind, path in [paths[i % len(paths)]]]
    return shots


def interleaved(shots: list[Shot]) -> list[Shot]:
    """The kinds mixed evenly (the storm's order is the order of connecting)."""
    by_kind: dict[str, list[Shot]] = {}
    for s in shots:
        by_kind.setdefault(s.kind, []).append(s)
    out: list[Shot] = []
    queues = list(by_kind.values())
    while any(queues):
        for q in queues:
            if q:
                out.append(q.pop())
    return out
