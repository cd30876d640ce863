"""Rate limits of ingest: token buckets per IP (requests), per client and per voter (votes), a
per-voter daily cap, and duplicate-prompt downsampling — one atomic Lua call per group of
requests, which can also confirm client keys, look votes up in the dedupe markers and claim the
new ones for this instance."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from importlib.resources import files
from typing import Any

from fastapi import Request

from services.common.http import ip_of
from services.common.redis_client import REDIS_ERRORS, RedisClient
from services.ingest.vote_ids import LookupPlan
from shared.events import Vote
from shared.keys import KeyLayout
from shared.settings import IngestSettings

log = logging.getLogger(__name__)

# vote_ids -> the dedupe keys to look in and claim with, each id's slot, keys per slot, the
# claimant (``VoteIdMemory.lookup_plan``)
DedupeLookup = Callable[[Sequence[str]], LookupPlan]

LIMITS_SCRIPT = files("services.ingest").joinpath("limits.lua").read_text()
DAY_S = 86_400
PROMPT_TTL_S = 30 * DAY_S


# slots, not frozen: one of each is built per request on the hot path, and a frozen dataclass's
# __init__ costs ~0.5 us more (measured)
@dataclass(slots=True)
class LimitRequest:
    """What one request is charged for: its address, its client, its votes (distinct ids).

    ``key``: the client key's (key id, stored record) as last seen, confirmed unchanged in the
    same call (a changed record answers ``key_changed`` and charges nothing)."""

    ip: str
    client: str | None
    votes: Sequence[Vote]
    key: tuple[str, bytes | str] | None = None


@dataclass(slots=True)
class Verdict:
    allowed: bool
    retry_after_s: int = 0
    limit: str = ""  # which limit was hit, e.g. "voter:u-1"
    votes: tuple[Vote, ...] = ()  # the new votes to publish (duplicate prompts marked excluded)
    key_changed: bool = False  # the client key's record is not what the caller saw
    # why the request could never pass, whatever the wait (more new votes for one limit than
    # its whole burst, or than a voter's daily cap): answered 422, not 429
    never: str = ""
    # a vote_id of the request claimed by another ingest instance, not settled yet: 503
    in_flight: str = ""


def client_ip(request: Request, trust_forwarded_for: bool) -> str:
    return ip_of(request.client.host if request.client is not None else None,
                 request.headers.get("x-forwarded-for", ""), trust_forwarded_for)


class RateLimiter:
    def __init__(
        self,
        client: RedisClient,
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

    async def check_many(
        self, requests: Sequence[LimitRequest], lookup: DedupeLookup | None = None
    ) -> list[Verdict]:
        """Charge each request to every limit it falls under, or refuse it whole (429): one
        atomic script call for the group, requests taken in order.

        With ``lookup`` (``VoteIdMemory.lookup_plan``), the same call looks every vote up,
        charges only the new ones (``Verdict.votes``) and claims them for this instance; a
        request with a vote claimed elsewhere is refused (``Verdict.in_flight``). Without it
        every vote is new and nothing is claimed. Redis
        failures fail open (logged: Kafka and the worker's screen remain), unless a client key
        was to be confirmed."""
        if not requests:
            return []
        now = self._clock()
        s = self._s
        day = int(now // DAY_S)
        refill_s = math.ceil(s.ingest_voter_burst / s.ingest_voter_votes_per_s)
        sets: list[str] = []
        slots: Iterator[int] = iter(())
        per_shard = claim_ttl_ms = 0
        owner = ""
        if lookup is not None:
            plan = lookup([v.vote_id for r in requests for v in r.votes])
            sets, per_shard = plan.keys, plan.per_shard
            owner, claim_ttl_ms = plan.owner, plan.claim_ttl_ms
            slots = iter(plan.slots)
        keys: list[str] = [self._keys.clients(), self._keys.voters(day),
                           self._keys.voters(day - 1), *sets]
        argv: list[float | int | str | bytes] = [
            int(now * 1000), len(requests), s.ingest_voter_votes_per_s, s.ingest_voter_burst,
            s.ingest_voter_daily_cap, day, DAY_S - int(now) % DAY_S,
            1 if lookup is not None else 0, s.ingest_ip_requests_per_s, s.ingest_ip_burst,
            s.ingest_client_votes_per_s, s.ingest_client_burst, s.ingest_prompt_hash_cap,
            PROMPT_TTL_S, DAY_S - int(now) % DAY_S + refill_s + 1, len(sets), per_shard,
            owner, claim_ttl_ms,
        ]
        plans = [self._plan(r, keys, argv, slots if lookup is not None else None)
                 for r in requests]
        try:
            reply = await self._script(keys=keys, args=argv)
        except REDIS_ERRORS as exc:
            if any(r.key is not None for r in requests):
                raise
            log.warning("rate limits unavailable, accepting without them: %s", exc)
            return [Verdict(True, votes=tuple(r.votes)) for r in requests]
        return self._verdicts(requests, plans, reply)

    def _verdicts(self, requests: Sequence[LimitRequest],
                  plans: list[tuple[list[str], list[tuple[str, str]]]], reply: list[Any]
                  ) -> list[Verdict]:
        """Each request's verdict, from the script's reply (3 values a request, then, for an
        allowed one, how many of its votes each prompt-hash counter allows)."""
        verdicts: list[Verdict] = []
        at = 0
        for request, (voters, order) in zip(requests, plans, strict=True):
            status, second, third = reply[at], reply[at + 1], reply[at + 2]
            at += 3
            if status == 2:
                verdicts.append(Verdict(False, key_changed=True))
                continue
            if status == 4:
                vote_id = request.votes[int(second) - 1].vote_id
                verdicts.append(Verdict(False, in_flight=vote_id))
                continue
            if status == 3:
                name, most = self._bound(request, voters, int(second))
                verdicts.append(Verdict(False, limit=name, never=(
                    f"{int(third)} new votes for {name} in one request, more than {most}: "
                    "it could never pass; split it into requests within the limit")))
                continue
            if status == 0:
                hit = int(third)
                name = _limit_names(request, voters)[abs(hit) - 1]
                if hit < 0:  # the voter's daily cap, not its rate
                    name = name.replace("voter:", "voter-daily-cap:", 1)
                verdicts.append(Verdict(False, int(second), name))
                continue
            np = int(second)
            allowed = {key: int(n) for key, n in zip(order, reply[at:at + np], strict=True)}
            at += np
            new = third if isinstance(third, bytes) else str(third).encode()
            votes = request.votes
            if b"0" in new:
                votes = [v for v, flag in zip(votes, new, strict=True) if flag == 49]  # "1"
            if allowed:
                votes = _downsample(votes, allowed)
            verdicts.append(Verdict(True, votes=tuple(votes)))
        return verdicts

    def _bound(self, request: LimitRequest, voters: list[str], hit: int) -> tuple[str, str]:
        """The limit a request can never pass (``hit`` as the script answers it) and what it
        allows in one request."""
        name = _limit_names(request, voters)[abs(hit) - 1]
        s = self._s
        if hit < 0:
            return (name.replace("voter:", "voter-daily-cap:", 1),
                    f"the voter's daily cap of {s.ingest_voter_daily_cap}")
        if name.startswith("voter:"):
            return name, f"the voter burst of {s.ingest_voter_burst}"
        return name, f"the client burst of {s.ingest_client_burst}"

    def _plan(
        self, request: LimitRequest, keys: list[str], argv: list[float | int | str | bytes],
        slots: Iterator[int] | None,
    ) -> tuple[list[str], list[tuple[str, str]]]:
        """Append one request's keys and arguments; returns its voters (in the order of their
        limits: see ``_limit_names``) and the order of its prompt counters. ``slots``: the
        dedupe slot of each vote of the group, in order (None: no lookup)."""
        votes = request.votes
        limit = self._keys.limit
        keys.append(limit("ip-bucket", request.ip))
        who = request.client or "-"
        if votes:
            keys.append(limit("client-bucket", who))
        voters: dict[str, int] = {}
        prompts: dict[tuple[str, str], int] = {}
        per_vote: list[int | str] = []
        capped = bool(self._s.ingest_prompt_hash_cap)
        for v in votes:
            voter_at = 0
            if v.voter is not None:
                voter_at = voters.setdefault(v.voter, len(voters) + 1)
            prompt_at = 0
            if capped and v.prompt_hash:
                prompt_at = prompts.setdefault((v.arena, v.prompt_hash), len(prompts) + 1)
            if slots is None:
                per_vote += (voter_at, prompt_at)
            else:
                per_vote += (voter_at, prompt_at, next(slots), v.vote_id)
        fields = [f"{who}|{voter}" for voter in voters]  # first appearance order
        order = list(prompts)
        for arena, digest in order:
            keys.append(limit("prompt", f"{arena}|{digest}"))
        kid, stored = request.key or ("", "")
        argv += [kid, stored, len(votes), len(voters), len(order), *fields, *per_vote]
        return list(voters), order


def _limit_names(request: LimitRequest, voters: list[str]) -> list[str]:
    """The names of a request's limits, in the script's order (its 429 says which was hit)."""
    names = [f"ip:{request.ip}"]
    if request.votes:
        names.append(f"client:{request.client or '-'}")
    return names + [f"voter:{voter}" for voter in voters]


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
