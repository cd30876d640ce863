"""What the rating worker measures (served by services/rating/health_server.py)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from services.common.metrics import BATCH_BUCKETS, LATENCY_BUCKETS
from services.common.records import RestoreMetrics


class RatingMetrics:
    """What the rating worker measures; the processor calls ``observe_batch``."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.batch_votes = Histogram(
            "podium_rating_batch_votes", "Votes per processed batch.", buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.votes = Counter("podium_rating_votes", "Votes processed (applied or replayed).",
                             registry=r)
        self.dead_letters = Counter("podium_rating_dead_letters",
                                    "Records sent to the dead-letter topic.", registry=r)
        self.apply_seconds = Histogram(
            "podium_rating_apply_seconds", "Time to apply one batch's counts to Redis.",
            buckets=LATENCY_BUCKETS, registry=r,
        )
        self.refit_seconds = Histogram(
            "podium_rating_refit_seconds", "Time to refit the boards a batch touched.",
            buckets=LATENCY_BUCKETS, registry=r,
        )
        self.boards_refitted = Counter("podium_rating_boards_refitted", "Board refits.",
                                       registry=r)
        self.consumer_lag = Gauge(
            "podium_rating_consumer_lag", "Records of the votes topic not yet committed by the "
            "consumer group (end offset - committed offset), per partition.", ["partition"],
            registry=r,
        )
        self.restore = RestoreMetrics(r, "rating")  # replays of the systems of record

        self.resumes = Counter(
            "podium_rating_resumes", "Votes partitions rewound to re-read offsets from Redis's "
            "fences, by reason: assignment (start, rebalance), state_lost (Redis lost applied "
            "votes).", ["reason"], registry=r,
        )
        self.catch_up_remaining = Gauge(
            "podium_rating_catch_up_remaining", "Offsets still to re-read after rewinds, until "
            "the worker is back where it was.", registry=r,
        )

    def observe_resume(self, reason: str) -> None:
        self.resumes.labels(reason).inc()

    def observe_batch(self, votes: int, apply_s: float, refit_s: float, boards: int) -> None:
        self.batch_votes.observe(votes)
        self.votes.inc(votes)
        self.apply_seconds.observe(apply_s)
        self.refit_seconds.observe(refit_s)
        self.boards_refitted.inc(boards)

    def observe_dead_letters(self, count: int) -> None:
        self.dead_letters.inc(count)
