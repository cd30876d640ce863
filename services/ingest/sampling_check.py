"""Sampling tokens brought back by votes: verified in process when the vote is accepted (no
Redis round trip on the vote's way: ``stamp``), tallied by board and policy after the votes
were published, each token once (``tally_later``; a second use is a replay). A token that does
not verify never refuses the vote: it counts, as unsampled (docs/security.md)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from importlib.resources import files

from services.common.redis_client import REDIS_ERRORS, RedisClient
from services.ingest.metrics import IngestMetrics
from shared.events import Vote, stamp_sampled_by
from shared.keys import FIELD_SEP
from shared.sampling_tokens import SamplingClaim, Unsampled, verify
from shared.settings import IngestSettings

log = logging.getLogger(__name__)

TALLY_SCRIPT = files("services.ingest").joinpath("sampling_tally.lua").read_text()
UNSAMPLED = "unsampled"


class SamplingCheck:
    def __init__(self, settings: IngestSettings, client: RedisClient,
                 metrics: IngestMetrics) -> None:
        secret = settings.sampling_secret
        self._secret = None if secret is None else secret.get_secret_value().encode()
        self._ttl_s = settings.sampling_token_ttl_s
        self._keys = settings.keys
        self._redis = client
        self._metrics = metrics
        self._script = client.register_script(TALLY_SCRIPT)
        self._tasks: set[asyncio.Task[None]] = set()

    def _verdict(self, vote: Vote) -> SamplingClaim | Unsampled:
        assert vote.sampling_token is not None and vote.received_at is not None
        return verify(vote.sampling_token, self._secret, vote, vote.received_at.timestamp(),
                      self._ttl_s)

    def stamp(self, votes: Iterable[Vote]) -> None:
        """Set ``sampled_by`` of the votes that brought a token (after ``stamp_received``)."""
        for vote in votes:
            if vote.sampling_token is None:
                continue
            verdict = self._verdict(vote)
            policy = verdict.policy if isinstance(verdict, SamplingClaim) else UNSAMPLED
            stamp_sampled_by(vote, "uniform" if policy == "uniform"
                             else "active" if policy == "active" else "unsampled")

    def tally_later(self, votes: Sequence[Vote]) -> None:
        """Tally the published votes that brought a token, in the background."""
        tokened = [v for v in votes if v.sampling_token is not None]
        if tokened:
            task = asyncio.ensure_future(self._tally(tokened))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def drain(self) -> None:
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _tally(self, votes: Sequence[Vote]) -> None:
        by_arena: dict[str, tuple[list[str], list[str | int], list[str]]] = {}
        for vote in votes:
            keys, args, refused = by_arena.setdefault(vote.arena, ([], [], []))
            verdict = self._verdict(vote)
            if isinstance(verdict, SamplingClaim):
                keys.append(self._keys.sampling_nonce(vote.arena, verdict.nonce))
                args += [vote.vote_id, f"{verdict.view}{FIELD_SEP}{verdict.policy}"]
                self._metrics.sampling_tokens.labels(verdict.policy).inc()
            else:
                refused.append(f"{UNSAMPLED}{FIELD_SEP}{verdict}")
                self._metrics.sampling_tokens.labels(verdict).inc()
        try:
            for arena, (keys, args, refused) in by_arena.items():
                tally = self._keys.sampling_tally(arena)
                if keys:
                    replays = await self._script(keys=[tally, *keys],
                                                 args=[2 * self._ttl_s, *args])
                    if replays:
                        self._metrics.sampling_tokens.labels("replayed").inc(int(replays))
                for field in refused:
                    await self._redis.hincrby(tally, field, 1)
        except REDIS_ERRORS as exc:  # the votes are counted; only their tally is lost
            log.warning("sampling tally of %d votes not written: %s", len(votes), exc)
