"""Rate limits of ingest: token buckets per IP (requests), per client and per voter (votes), a
per-voter daily cap, and duplicate-prompt downsampling — one atomic Lua call per request."""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib.resources import files

import redis.asyncio as aioredis
from fastapi import Request

from shared.events import Vote
from shared.keys import KeyLayout
from shared.settings import IngestSettings

log = logging.getLogger(__name__)

LIMITS_SCRIPT = files("services.ingest").joinpath("limits.lua").read_text()
DAY_S = 86_400
PROMPT_TTL_S = 30 * DAY_S


@dataclass(frozen=True)
class LimitRequest:
    """What one request is charged for: its address, its client, the votes to publish."""

    ip: str
    client: str | None
    votes: Sequence[Vote]


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    retry_after_s: int = 0
    limit: str = ""  # which limit was hit, e.g. "voter:u-1"
    votes: tuple[Vote, ...] = ()  # the votes to publish (duplicate prompts marked excluded)


def ip_of(peer: str | None, forwarded_for: str, trust_forwarded_for: bool) -> str:
    """The address a request is charged to: the first X-Forwarded-For hop when trusted (ingest
    behind a proxy), else the peer address."""
    if trust_forwarded_for:
        first = forwarded_for.split(",")[0].strip()
        if first:
            return first[:64]
    return peer or "unknown"


def client_ip(request: Request, trust_forwarded_for: bool) -> str:
    return ip_of(request.client.host if request.client is not None else None,
                 request.headers.get("x-forwarded-for", ""), trust_forwarded_for)


class RateLimiter:
    def __init__(
        self,
        client: aioredis.Redis,
        keys: KeyLayout,
        settings: IngestSettings,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._keys = keys
        self._s = settings
        self._clock = clock
        self._script = client.register_script(LIMITS_SCRIPT)

    async def check(self, ip: str, client: str | None, votes: Sequence[Vote]) -> Verdict:
        """Charge one request to every limit it falls under, or refuse it whole (429)."""
        return (await self.check_many([LimitRequest(ip, client, votes)]))[0]

    async def check_many(self, requests: Sequence[LimitRequest]) -> list[Verdict]:
        """Charge each request to every limit it falls under, or refuse it whole (429): one
        atomic script call for the group, requests taken in order. Redis failures fail open
        (logged): Kafka and the worker's screen remain."""
        if not requests:
            return []
        now = self._clock()
        s = self._s
        keys: list[str] = []
        argv: list[float | int] = [
            int(now * 1000), len(requests), s.ingest_voter_votes_per_s, s.ingest_voter_burst,
            s.ingest_voter_daily_cap, int(now // DAY_S), DAY_S - int(now) % DAY_S,
        ]
        plans = [self._plan(r, keys, argv) for r in requests]
        try:
            reply = await self._script(keys=keys, args=argv)
        except aioredis.RedisError as exc:
            log.warning("rate limits unavailable, accepting without them: %s", exc)
            return [Verdict(True, votes=tuple(r.votes)) for r in requests]
        verdicts: list[Verdict] = []
        at = 0
        for request, (names, order) in zip(requests, plans, strict=True):
            status, second, third = (int(x) for x in reply[at:at + 3])
            at += 3
            if status == 0:
                name = names[abs(third) - 1]
                if third < 0:  # the voter's daily cap, not its rate
                    name = name.replace("voter:", "voter-daily-cap:", 1)
                verdicts.append(Verdict(False, second, name))
                continue
            allowed = {key: int(n) for key, n in zip(order, reply[at:at + second], strict=True)}
            at += second
            verdicts.append(Verdict(True, votes=tuple(_downsample(request.votes, allowed))))
        return verdicts

    def _plan(
        self, request: LimitRequest, keys: list[str], argv: list[float | int]
    ) -> tuple[list[str], list[tuple[str, str]]]:
        """Append one request's keys and arguments; returns the names of its limits (for the
        429 message) and the order of its prompt counters."""
        s = self._s
        votes = request.votes
        limit = self._keys.limit
        keys.append(limit("ip-bucket", request.ip))
        names = [f"ip:{request.ip}"]
        buckets: list[float | int] = [s.ingest_ip_requests_per_s, s.ingest_ip_burst, 1]
        who = request.client or "-"
        if votes:
            keys.append(limit("client-bucket", who))
            names.append(f"client:{who}")
            buckets += [s.ingest_client_votes_per_s, s.ingest_client_burst, len(votes)]
        per_voter = Counter([v.voter for v in votes if v.voter is not None])
        argv += [len(buckets) // 3, *buckets, len(per_voter), *per_voter.values()]
        for voter in per_voter:  # first appearance order (Counter keeps insertion order)
            keys.append(limit("voter-state", f"{who}|{voter}"))
            names.append(f"voter:{voter}")
        prompts: Counter[tuple[str, str]] = Counter()
        if s.ingest_prompt_hash_cap:
            prompts.update((v.arena, v.prompt_hash) for v in votes if v.prompt_hash)
        order = sorted(prompts)
        argv.append(len(order))
        for arena, digest in order:
            keys.append(limit("prompt", f"{arena}|{digest}"))
            argv += [s.ingest_prompt_hash_cap, prompts[(arena, digest)], PROMPT_TTL_S]
        return names, order


def _downsample(votes: Sequence[Vote], allowed: dict[tuple[str, str], int]) -> list[Vote]:
    """Mark the votes of each (arena, prompt_hash) past its allowance as excluded."""
    out: list[Vote] = []
    left = dict(allowed)
    for v in votes:
        if v.prompt_hash is not None and (v.arena, v.prompt_hash) in left:
            key = (v.arena, v.prompt_hash)
            if left[key] <= 0:
                v = v.model_copy(update={"excluded": "duplicate_prompt"})
            left[key] -= 1
        out.append(v)
    return out
