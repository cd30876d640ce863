"""The vote ids ingest remembers: ``VoteIdMemory`` (dedupe markers in Redis for the dedupe
window, kept in process while Redis refuses them; claims of the ids an instance is producing, so
that another instance does not produce them too) and ``VotesInProgress`` (the ids this process
is accepting right now)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import secrets
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from importlib.resources import files
from typing import Any

from services.common.redis_client import REDIS_ERRORS, RedisClient, RedisPipeline
from shared.keys import KeyLayout, dedupe_shard

log = logging.getLogger(__name__)


class VotesInProgress:
    """The vote_ids this process is accepting right now. A request holds its ids from the dedupe
    lookup until they are remembered, so a concurrent request with one of them waits and then
    finds it remembered (a duplicate), instead of producing it a second time."""

    def __init__(self) -> None:
        self._held: dict[str, asyncio.Event] = {}

    @contextlib.asynccontextmanager
    async def hold(self, vote_ids: Iterable[str]) -> AsyncIterator[None]:
        release = await self.acquire(vote_ids)
        try:
            yield
        finally:
            release()

    async def acquire(self, vote_ids: Iterable[str]) -> Callable[[], None]:
        """Hold ``vote_ids`` (waiting for whoever holds any of them); returns the release."""
        wanted = set(vote_ids)
        while busy := {self._held[v] for v in wanted if v in self._held}:
            await asyncio.gather(*(event.wait() for event in busy))
        released = asyncio.Event()
        for v in wanted:
            self._held[v] = released

        def release() -> None:
            for v in wanted:
                del self._held[v]
            released.set()

        return release


@dataclass(frozen=True, slots=True)
class LookupPlan:
    """A lookup (and claim) of vote ids inside another script call (the rate limits'): per
    shard the ids fall in, ``per_shard`` keys (its in-flight hash, then its dedupe sets: see
    ``VoteIdMemory._buckets``); per id its shard's slot (1-based: its keys are
    ``per_shard * (slot - 1) + 1 ..`` of ``keys``); who claims (``owner``) and for how long."""

    keys: list[str]
    slots: list[int]
    per_shard: int
    owner: str
    claim_ttl_ms: int


@dataclass(slots=True)
class Claims:
    """The outcome of claiming vote ids: ``accepted`` (remembered: duplicates), ``elsewhere``
    (claimed by another ingest instance, not settled yet); every other id is claimed by this
    instance now (or was already: a send of its own still in flight)."""

    accepted: set[str]
    elsewhere: set[str]


class VoteIdMemory:
    """Remembers accepted vote ids for the dedupe window, so a client retry is not a new vote.

    Ids are members of sets, one per shard (``DEDUPE_SHARDS``, all under ingest's one hash tag)
    and per window-long bucket of time (``bucket = unix time // window``). A bucket's sets
    expire two windows after the bucket began, so an id is remembered for at least one window
    and at most two. A lookup checks the current bucket, the one before, and, in the last minute
    of a bucket, the next one (another ingest instance's clock may be a little ahead). One SADD
    per shard a group touches (in one script call), instead of a key with a TTL per vote: a new
    key cost Redis ~5 us, a set member ~1 (bench/RESULTS.md; docs/decisions.md, record 38).

    Before producing, an instance claims the ids it is about to send (``claim``, or inside the
    rate-limit call: ``lookup_plan``): a field per id in its shard's in-flight hash, naming the
    instance (``owner``) and the claim's expiry (``claim_ttl_s``). Another instance seeing a live
    claim answers 503 instead of producing the vote again; the claim is dropped when the id is
    remembered (delivered) or ``release``d (its send failed for sure)."""

    def __init__(
        self, client: RedisClient, keys: KeyLayout, window_s: int,
        clock: Callable[[], float] = time.time,
        write_retry_s: float = 15.0,
        unremembered_max: int = 1_000_000,
        claim_ttl_s: float = 120.0,
    ) -> None:
        self._redis = client
        self._keys = keys
        self._window_s = window_s
        self._clock = clock
        self._remember = client.register_script(REMEMBER_SCRIPT)
        self._claim = client.register_script(CLAIM_SCRIPT)
        self._release = client.register_script(RELEASE_SCRIPT)
        self._claim_ttl_ms = math.ceil(claim_ttl_s * 1000)
        # this process, for its claims: a restarted instance is another owner
        self.owner = secrets.token_hex(8)
        self._write_retry_s = write_retry_s
        # ids whose markers Redis has not taken yet (insertion order: oldest first), and the
        # task that keeps writing them
        self._unremembered: dict[str, None] = {}
        self._unremembered_max = unremembered_max
        self._writer: asyncio.Task[None] | None = None

    @property
    def enabled(self) -> bool:
        return self._window_s > 0

    def _buckets(self) -> list[int]:
        """The buckets a lookup looks in now: current, previous and, near its end, next."""
        now, window = self._clock(), self._window_s
        bucket = int(now // window)
        if now >= (bucket + 1) * window - DEDUPE_CLOCK_SKEW_S:
            return [bucket, bucket - 1, bucket + 1]
        return [bucket, bucket - 1]

    def lookup_plan(self, vote_ids: Sequence[str]) -> LookupPlan:
        """For a lookup and claim inside another script call (``LookupPlan``)."""
        buckets = self._buckets()
        slot_of: dict[int, int] = {}
        slots = [slot_of.setdefault(dedupe_shard(v), len(slot_of) + 1) for v in vote_ids]
        sets, in_flight = self._keys.dedupe_ids, self._keys.in_flight_ids
        keys = [k for shard in slot_of
                for k in (in_flight(shard), *(sets(shard, b) for b in buckets))]
        return LookupPlan(keys, slots, len(buckets) + 1, self.owner, self._claim_ttl_ms)

    async def claim(self, vote_ids: Sequence[str]) -> Claims:
        """Claim ``vote_ids`` for this instance to produce (one script call): see ``Claims``.
        Fails open (nothing claimed, nothing found) if Redis fails: Kafka stays the record."""
        if not self._window_s or not vote_ids:
            return Claims(set(), set())
        by_shard = _by_shard(vote_ids)
        buckets = self._buckets()
        sets, in_flight = self._keys.dedupe_ids, self._keys.in_flight_ids
        keys = [k for shard in by_shard
                for k in (in_flight(shard), *(sets(shard, b) for b in buckets))]
        args: list[str | int] = [int(self._clock() * 1000), self._claim_ttl_ms, self.owner,
                                 len(buckets) + 1, *(len(ids) for ids in by_shard.values())]
        for ids in by_shard.values():
            args += ids
        try:
            states = await self._claim(keys=keys, args=args)
        except REDIS_ERRORS as exc:
            log.warning("claiming vote ids failed, accepting without it: %s", exc)
            return Claims(self.unremembered(vote_ids), set())
        state = states if isinstance(states, bytes) else str(states).encode()
        claims = Claims(self.unremembered(vote_ids), set())
        ordered = (v for ids in by_shard.values() for v in ids)
        for vote_id, flag in zip(ordered, state, strict=True):
            if flag == ACCEPTED:
                claims.accepted.add(vote_id)
            elif flag == ELSEWHERE:
                claims.elsewhere.add(vote_id)
        return claims

    async def renew(self, vote_ids: Sequence[str]) -> None:
        """Renew this instance's claims of ``vote_ids`` (sends still in flight): a claim again.
        Never raises."""
        claims = await self.claim(vote_ids)
        if claims.elsewhere:
            log.warning("%d vote ids in flight here were claimed by another instance meanwhile "
                        "(this claim had expired): they may be produced twice",
                        len(claims.elsewhere))

    async def release(self, vote_ids: Iterable[str]) -> None:
        """Drop this instance's claims of ``vote_ids`` (their sends failed for sure, or they
        were never sent): a retry may produce them, here or elsewhere. Never raises: a claim
        not dropped expires (``claim_ttl_s``)."""
        by_shard = _by_shard(vote_ids)
        if not self._window_s or not by_shard:
            return
        keys = [self._keys.in_flight_ids(shard) for shard in by_shard]
        args: list[str | int] = [self.owner, *(len(ids) for ids in by_shard.values())]
        for ids in by_shard.values():
            args += ids
        try:
            await self._release(keys=keys, args=args)
        except REDIS_ERRORS as exc:
            log.warning("could not release the claims of %d vote ids (%s): they expire",
                        sum(len(ids) for ids in by_shard.values()), exc)

    async def seen(self, vote_ids: Sequence[str]) -> set[str]:
        """The ids remembered within the window: one round trip."""
        if not self._window_s or not vote_ids:
            return set()
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                found = self.queue_lookup(pipe, vote_ids)
                return found(iter(await pipe.execute()))
        except REDIS_ERRORS as exc:  # fail open: Kafka stays the system of record
            log.warning("dedupe lookup failed, accepting without it: %s", exc)
            return set()

    def queue_lookup(
        self, pipe: RedisPipeline, vote_ids: Sequence[str]
    ) -> Callable[[Iterator[Any]], set[str]]:
        """Add the lookup of ``vote_ids`` to a pipeline shared with other commands; returns what
        reads the seen ids from its replies (consuming them): one SMISMEMBER per shard and
        bucket looked in."""
        if not self._window_s or not vote_ids:
            return lambda replies: set()
        buckets = self._buckets()
        by_shard = _by_shard(vote_ids)
        sets = self._keys.dedupe_ids
        for shard, ids in by_shard.items():
            for b in buckets:
                pipe.smismember(sets(shard, b), ids)

        def found(replies: Iterator[Any]) -> set[str]:
            hits = self.unremembered(vote_ids)
            for ids in by_shard.values():
                for _ in buckets:
                    hits.update(v for v, hit in zip(ids, next(replies), strict=True) if hit)
            return hits

        return found

    def unremembered(self, vote_ids: Iterable[str]) -> set[str]:
        """The ids among ``vote_ids`` accepted by this process whose markers Redis has not
        taken yet (Redis was down past the retries): remembered here meanwhile."""
        if not self._unremembered:
            return set()
        return {v for v in vote_ids if v in self._unremembered}

    @property
    def unremembered_count(self) -> int:
        return len(self._unremembered)

    async def remember(self, vote_ids: Iterable[str]) -> None:
        """Write the ids' markers, retried on failure (fresh connections, backoff) for up to
        ``write_retry_s``: long enough to ride out a Redis restart. Ids still unwritten then
        are kept in process (``unremembered``) and written by a background task. Never raises:
        the votes are in Kafka already."""
        if not self._window_s:
            return
        ids = list(vote_ids)
        if not ids:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._write_retry_s
        delay = REMEMBER_RETRY_FIRST_S
        while True:
            try:
                await self._write(ids)
                return
            except REDIS_ERRORS as exc:
                if loop.time() + delay > deadline:
                    log.warning("could not remember %d vote ids for %.1f s (%s): kept in "
                                "process until Redis takes them", len(ids),
                                self._write_retry_s, exc)
                    self._keep_unremembered(ids)
                    return
            await asyncio.sleep(delay)  # a backoff between attempts, not a wait for a state
            delay = min(delay * 2, REMEMBER_RETRY_MAX_S)

    def _keep_unremembered(self, ids: list[str]) -> None:
        kept = self._unremembered
        kept.update(dict.fromkeys(ids))
        if len(kept) > self._unremembered_max:
            dropped = len(kept) - self._unremembered_max
            for vote_id in list(itertools.islice(kept, dropped)):
                del kept[vote_id]
            log.error("%d unremembered vote ids dropped (more than %d kept): a retry of them "
                      "would be counted again", dropped, self._unremembered_max)
        if self._writer is None or self._writer.done():
            self._writer = asyncio.ensure_future(self._write_unremembered())

    async def _write_unremembered(self) -> None:
        """Until every kept id is written: write them (in chunks), backing off while Redis
        refuses."""
        delay = REMEMBER_RETRY_FIRST_S
        while self._unremembered:
            chunk = list(itertools.islice(self._unremembered, UNREMEMBERED_CHUNK))
            try:
                await self._write(chunk)
            except REDIS_ERRORS as exc:
                log.debug("unremembered vote ids not written yet: %s", exc)
                await asyncio.sleep(delay)  # backoff while Redis is down
                delay = min(delay * 2, REMEMBER_RETRY_MAX_S)
                continue
            for vote_id in chunk:
                self._unremembered.pop(vote_id, None)
            delay = REMEMBER_RETRY_FIRST_S
        log.info("unremembered vote ids written to Redis")

    async def close(self, timeout_s: float = 5.0) -> None:
        """At shutdown: give the kept ids ``timeout_s`` more to reach Redis; log what is lost."""
        writer = self._writer
        if writer is None:
            return
        try:
            async with asyncio.timeout(timeout_s):
                await asyncio.shield(writer)
        except TimeoutError:
            writer.cancel()
            log.error("shutdown: %d accepted vote ids never reached Redis's dedupe markers: a "
                      "retry of them would be counted again", len(self._unremembered))
        with contextlib.suppress(asyncio.CancelledError):
            await writer

    async def _write(self, vote_ids: Iterable[str]) -> None:
        """Add ids to the current bucket's sets and drop their claims: one script call (per
        shard an SADD, an EXPIRE and an HDEL; a pipeline of those cost a group of single votes
        more of ingest's CPU)."""
        by_shard = _by_shard(vote_ids)
        if not by_shard:
            return
        window = self._window_s
        now = self._clock()
        bucket = int(now // window)
        # relative: Redis expires by its own clock
        ttl = math.ceil((bucket + 2) * window + DEDUPE_EXPIRY_MARGIN_S - now)
        sets = self._keys.dedupe_ids
        keys = [sets(shard, bucket) for shard in by_shard]
        keys += [self._keys.in_flight_ids(shard) for shard in by_shard]
        args: list[str | int] = [ttl, *(len(ids) for ids in by_shard.values())]
        for ids in by_shard.values():
            args += ids
        await self._remember(keys=keys, args=args)


REMEMBER_SCRIPT = files("services.ingest").joinpath("remember_ids.lua").read_text()
CLAIM_SCRIPT = files("services.ingest").joinpath("claim_ids.lua").read_text()
RELEASE_SCRIPT = files("services.ingest").joinpath("release_ids.lua").read_text()
# the claim script's answer per id: "0" remembered, "1" claimed here, "2" claimed elsewhere
ACCEPTED, ELSEWHERE = ord("0"), ord("2")

# how far apart the clocks of ingest instances may be: sets are kept this much past two
# windows, and the next bucket is looked in this long before it begins
DEDUPE_CLOCK_SKEW_S = 60
DEDUPE_EXPIRY_MARGIN_S = DEDUPE_CLOCK_SKEW_S
# backoff between attempts to write dedupe markers (Redis down): 50 ms doubling to 1 s
REMEMBER_RETRY_FIRST_S = 0.05
REMEMBER_RETRY_MAX_S = 1.0
UNREMEMBERED_CHUNK = 10_000


def _by_shard(vote_ids: Iterable[str]) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    for v in vote_ids:
        shard = dedupe_shard(v)
        ids = out.get(shard)
        if ids is None:
            out[shard] = [v]
        else:
            ids.append(v)
    return out
