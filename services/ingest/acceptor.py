"""Accepting votes, one group of requests at a time (group commit).

Every vote request — a single vote, a batch, from FastAPI's routes or from the fast path — is
submitted here and waits for its answer. The requests submitted during one turn of the event
loop form a group, and the group pays once for what used to cost every request: one lookup of
client keys, one registry check, one dedupe lookup, one rate-limit script call (requests still
charged one by one, in order, atomically), one Kafka send per arena chunk and one ack wait, one
dedupe write. Each request still gets its own answer: 202, 401, 422, 429 or 503.

Before a vote is produced its vote_id is claimed in Redis for this instance (inside the
rate-limit call, or one claim call for large groups): a request with a vote_id another ingest
instance has claimed and not settled yet is answered 503 (retry later), never produced again.

A request whose vote_id also appears in an earlier request of the same group moves to the next
group, so that it sees the first one's outcome (a duplicate if it was accepted).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import dataclass

from services.common.http import (
    REDIS_UNAVAILABLE_DETAIL,
    REDIS_UNAVAILABLE_HEADERS,
    note_redis_unavailable,
)
from services.common.logcontext import request_context
from services.common.records import RecordUnavailable
from services.common.redis_client import REDIS_ERRORS, REDIS_UNAVAILABLE, RedisClient
from services.common.registry import ModelRegistry
from services.ingest.client_key_check import ClientKeyCheck
from services.ingest.client_keys import ClientRecord
from services.ingest.limits import LimitRequest, RateLimiter, Verdict
from services.ingest.metrics import IngestMetrics
from services.ingest.publisher import PublishUnavailable, VotePublisher
from services.ingest.sampling_check import SamplingCheck
from services.ingest.submission import (
    UNAUTHORIZED_HEADERS,
    Answer,
    Submission,
    accepted_and_duplicates,
    first_copies,
    refused,
    unknown_models_detail,
)
from services.ingest.verdicts import after_claims, refusal
from services.ingest.vote_ids import VoteIdMemory, VotesInProgress
from shared.events import Vote, stamp_received, utc_now
from shared.settings import IngestSettings

log = logging.getLogger(__name__)

# Groups of at most this many votes are accepted with one Redis call (see _one_trip_possible).
ONE_TRIP_MAX_VOTES = 256


@dataclass(slots=True)
class _Pending:
    submission: Submission
    answer: asyncio.Future[Answer]
    client: str | None = None


class VoteAcceptor:
    """Groups concurrent vote requests and accepts each group in one pass (module docstring)."""

    def __init__(
        self,
        settings: IngestSettings,
        publisher: VotePublisher,
        memory: VoteIdMemory,
        registry: ModelRegistry,
        limiter: RateLimiter,
        client_keys: ClientKeyCheck,
        metrics: IngestMetrics,
        redis_client: RedisClient,
        max_group_votes: int = 20_000,
        max_groups_in_flight: int = 4,
    ) -> None:
        self._settings = settings
        self._publisher = publisher
        self._memory = memory
        self._registry = registry
        self._limiter = limiter
        self._client_keys = client_keys
        self._redis = redis_client
        self._metrics = metrics
        self._max_group_votes = max_group_votes
        self._max_groups = max_groups_in_flight
        self._queue: deque[_Pending] = deque()
        self._flush_scheduled = False
        self._in_progress = VotesInProgress()
        self._groups: set[asyncio.Task[None]] = set()
        self._sampling = SamplingCheck(settings, redis_client, metrics)

    @property
    def metrics(self) -> IngestMetrics:
        return self._metrics

    async def submit(self, submission: Submission) -> Answer:
        loop = asyncio.get_running_loop()
        pending = _Pending(submission, loop.create_future())
        self._queue.append(pending)
        self._schedule_flush()
        return await pending.answer

    async def drain(self) -> None:
        """Wait for the groups in progress (graceful shutdown)."""
        while self._groups or self._queue:
            if self._groups:
                await asyncio.gather(*self._groups, return_exceptions=True)
            else:
                await asyncio.sleep(0)
        await self._sampling.drain()

    def _schedule_flush(self) -> None:
        """Start a runner for the queue unless one is about to start or all slots run."""
        if not self._flush_scheduled and len(self._groups) < self._max_groups:
            self._flush_scheduled = True
            task = asyncio.ensure_future(self._runner())
            self._groups.add(task)
            task.add_done_callback(self._groups.discard)

    async def _runner(self) -> None:
        """One of at most ``max_groups_in_flight``: accepts the queue a group at a time until
        it is empty. It takes its first group when it starts, i.e. the requests submitted
        during the turn of the event loop that scheduled it, and each next group as soon as
        the last one is answered: the requests that arrived meanwhile (the busier ingest is,
        the larger its groups and the less each request costs). Continuing in the same task
        saves the event loop turns that a done callback and a new task would each wait for,
        on every request's way."""
        self._flush_scheduled = False
        while self._queue:
            group: list[_Pending] = []
            size = 0
            queue = self._queue
            while queue and (not group or size + len(queue[0].submission.votes)
                             <= self._max_group_votes):
                size += len(queue[0].submission.votes)
                group.append(queue.popleft())
            if queue:  # more than one group waits: another runner, if a slot is free
                self._schedule_flush()
            await self._run(group)

    async def _run(self, group: list[_Pending]) -> None:
        try:
            await self._accept(group)
        except REDIS_UNAVAILABLE as exc:  # Redis down, restarting or saturated: retryable
            note_redis_unavailable(exc)
            for p in group:
                self._answer(p, refused(503, "redis_unavailable", REDIS_UNAVAILABLE_DETAIL,
                                         dict(REDIS_UNAVAILABLE_HEADERS)))
        except RecordUnavailable as exc:  # a new model's registry record not acknowledged
            log.warning("503 for %d requests: %s", len(group), exc)
            for p in group:
                self._answer(p, refused(
                    503, "kafka_unavailable",
                    "Kafka could not acknowledge the registry record of a new model; retry "
                    "with the same vote_id", {"Retry-After": "1"}))
        except Exception as exc:  # never leave a request hanging
            log.exception("accepting a group of %d requests failed", len(group))
            for p in group:
                if not p.answer.done():
                    p.answer.set_exception(exc)

    def _answer(self, p: _Pending, answer: Answer) -> None:
        if not p.answer.done():
            p.answer.set_result(answer)

    async def _accept(self, group: list[_Pending]) -> None:
        # a vote_id already in an earlier request of this group: that request goes next time
        taken: set[str] = set()
        mine: list[_Pending] = []
        for p in await self._registered_only(group):
            ids = [v.vote_id for v in p.submission.votes]
            if taken.isdisjoint(ids):
                taken.update(ids)
                mine.append(p)
            else:
                self._queue.append(p)
        ids = [v.vote_id for p in mine for v in p.submission.votes]
        release = await self._in_progress.acquire(ids)
        try:
            if await self._one_trip_possible(mine):
                await self._accept_in_one_trip(mine)
                return
            checked, seen = await self._lookup(mine, ids)
            live = []
            for p in mine:  # authenticate
                key = p.submission.api_key
                result = p.submission.client if key is None else checked[key]
                if isinstance(result, Answer):
                    self._answer(p, result)
                    continue
                p.client = result if result is None or isinstance(result, str) else result.client
                live.append(p)
            live = await self._known_models(live)
            if live:
                await self._accept_held(live, seen)
        finally:
            release()

    async def _registered_only(self, group: list[_Pending]) -> list[_Pending]:
        """The group without the requests whose client key is surely not registered: those
        are answered 401 here, without taking a Redis connection."""
        live = []
        for p in group:
            key = p.submission.api_key
            if key is None or await self._client_keys.may_be_registered(key):
                live.append(p)
            else:
                self._answer(p, refused(401, "unauthorized", "unknown or revoked client key",
                                         UNAUTHORIZED_HEADERS))
        return live

    async def _one_trip_possible(self, group: list[_Pending]) -> bool:
        """Whether the group can be accepted with one Redis call: it is small (a lookup inside
        the script costs Redis more per vote than an MGET: worth it for single votes, where the
        round trip is what counts, not for batches of thousands), every client key was found
        valid before (the call confirms its record unchanged) and every model is registered
        (so no request gets a 422 or registers a model before its key is confirmed)."""
        if sum(len(p.submission.votes) for p in group) > ONE_TRIP_MAX_VOTES:
            return False
        if any(p.submission.api_key is not None
               and self._client_keys.remembered(p.submission.api_key) is None for p in group):
            return False
        models = {m for p in group for v in p.submission.votes for m in (v.model_a, v.model_b)}
        return not models or not await self._registry.unknown(models)

    async def _accept_in_one_trip(self, group: list[_Pending]) -> None:
        """Confirm client keys, look the votes up in the dedupe markers and charge the new ones
        to the rate limits in one script call, then publish and answer. A request whose key's
        record changed meanwhile goes to the next group (checked in full there)."""
        requests: list[LimitRequest] = []
        for p in group:
            submission = p.submission
            key: tuple[str, bytes | str] | None = None
            p.client = submission.client
            if submission.api_key is not None:
                known = self._client_keys.remembered(submission.api_key)
                assert known is not None  # _one_trip_possible
                key, p.client = (known[0], known[1]), known[2].client
            distinct = {v.vote_id: v for v in first_copies(submission.votes)}
            for vote_id in self._memory.unremembered(distinct):  # accepted: a duplicate
                del distinct[vote_id]
            requests.append(LimitRequest(submission.ip, p.client, list(distinct.values()), key))
        # server-set fields: a client cannot pre-release or pre-exclude a vote
        stamp_received((v for r in requests for v in r.votes), utc_now())
        self._sampling.stamp(v for r in requests for v in r.votes)
        verdicts = await self._limiter.check_many(
            requests, lookup=self._memory.lookup_plan if self._memory.enabled else None)
        judged: list[tuple[_Pending, Verdict]] = []
        for p, verdict in zip(group, verdicts, strict=True):
            if verdict.key_changed:
                assert p.submission.api_key is not None
                self._client_keys.forget(p.submission.api_key)
                self._queue.append(p)  # waits for this group's ids, then is checked in full
            else:
                judged.append((p, verdict))
        if self._queue:
            self._schedule_flush()
        await self._publish_and_answer(judged)

    async def _lookup(
        self, group: list[_Pending], ids: list[str]
    ) -> tuple[dict[str, ClientRecord | Answer], set[str]]:
        """Client keys and dedupe markers in one round trip. If Redis fails, the dedupe
        lookup fails open (Kafka stays the system of record) but keys cannot be checked."""
        keys = [p.submission.api_key for p in group if p.submission.api_key is not None]
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                checked = self._client_keys.queue(pipe, keys)
                found = self._memory.queue_lookup(pipe, ids)
                replies = iter(await pipe.execute())
                return checked(replies), found(replies)
        except REDIS_ERRORS as exc:
            if keys:
                raise
            log.warning("dedupe lookup failed, accepting without it: %s", exc)
            return {}, self._memory.unremembered(ids)

    async def _known_models(self, group: list[_Pending]) -> list[_Pending]:
        models = {m for p in group for v in p.submission.votes for m in (v.model_a, v.model_b)}
        if not models:
            return group
        if self._settings.ingest_auto_register_models:
            await self._registry.register_missing(models)
            return group
        missing = set(await self._registry.unknown(models))
        if not missing:
            return group
        live = []
        for p in group:
            theirs = sorted({m for v in p.submission.votes for m in (v.model_a, v.model_b)}
                            & missing)
            if not theirs:
                live.append(p)
                continue
            self._answer(p, refused(422, "unknown_model", unknown_models_detail(theirs)))
        return live

    async def _accept_held(self, group: list[_Pending], seen: set[str]) -> None:
        """Answer the group (``seen``: its vote ids remembered as accepted before)."""
        fresh_of = [[v for v in first_copies(p.submission.votes) if v.vote_id not in seen]
                    for p in group]
        # server-set fields: a client cannot pre-release or pre-exclude a vote
        stamp_received((v for votes in fresh_of for v in votes), utc_now())
        self._sampling.stamp(v for votes in fresh_of for v in votes)
        verdicts = await self._limiter.check_many(
            [LimitRequest(p.submission.ip, p.client, f)
             for p, f in zip(group, fresh_of, strict=True)])
        verdicts = await self._claimed(verdicts)
        await self._publish_and_answer(list(zip(group, verdicts, strict=True)))

    async def _claimed(self, verdicts: list[Verdict]) -> list[Verdict]:
        """Claim the votes of the allowed requests (one call): a request with a vote claimed
        by another instance is refused (its own claims released), votes remembered meanwhile
        are dropped (duplicates)."""
        if not self._memory.enabled:
            return verdicts
        claims = await self._memory.claim(
            [v.vote_id for verdict in verdicts if verdict.allowed for v in verdict.votes])
        out, unclaim = after_claims(verdicts, claims)
        await self._release(unclaim)
        return out

    async def _release(self, vote_ids: list[str]) -> None:
        """Give up this instance's claims of ``vote_ids`` that no send of it holds."""
        if vote_ids:
            held = self._publisher.in_flight(vote_ids)
            await self._memory.release([v for v in vote_ids if v not in held])

    async def _publish_and_answer(self, judged: list[tuple[_Pending, Verdict]]) -> None:
        """Answer 429 to the requests over a limit, publish the new votes of the others, write
        their dedupe markers and answer them."""
        allowed: list[tuple[_Pending, list[Vote]]] = []
        for p, verdict in judged:
            if verdict.allowed:
                allowed.append((p, list(verdict.votes)))
            else:
                self._answer(p, refusal(verdict))
        to_publish = [v for _, votes in allowed for v in votes]
        try:
            await self._publisher.publish(to_publish)
        except PublishUnavailable as exc:
            log.warning("503 for %d votes: %s", len(to_publish), exc)
            # before the 503s: a retry elsewhere may produce what was surely not sent
            await self._release([v.vote_id for v in to_publish])
            for p, _ in allowed:
                self._answer(p, refused(
                    503, "kafka_unavailable",
                    "Kafka could not acknowledge the votes; retry with the same vote_id",
                    {"Retry-After": "1"}))
            return
        # before the 202s: a vote answered 202 is remembered, in Redis or (Redis down past the
        # retries) in this process until Redis takes it; a retry of it is a duplicate
        await self._memory.remember(v.vote_id for v in to_publish)
        self._sampling.tally_later(to_publish)
        accepted = repeated = 0
        observe_size = self._metrics.batch_size.observe
        for p, votes in allowed:
            ids, duplicates = accepted_and_duplicates(p.submission.votes, votes)
            accepted += len(votes)
            repeated += len(duplicates)
            observe_size(len(p.submission.votes))
            if log.isEnabledFor(logging.DEBUG):
                with request_context(p.submission.request_id, ids):
                    log.debug("accepted %d votes (%d duplicates)", len(votes),
                              len(duplicates))
            answer = Answer(202, {"accepted": ids, "duplicates": duplicates})
            respond = p.submission.respond
            if respond is not None and not p.answer.done():
                try:
                    await respond(answer)
                except Exception:  # the request's own task answers (and fails) as before
                    log.exception("writing an answer failed")
            self._answer(p, answer)
        self._metrics.votes_accepted.inc(accepted)
        self._metrics.votes_duplicate.inc(repeated)
