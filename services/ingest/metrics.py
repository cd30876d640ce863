"""Ingest's Prometheus metrics: the HTTP ones every service has, and its votes."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

from services.common.metrics import BATCH_BUCKETS, HttpMetrics


class IngestMetrics(HttpMetrics):
    """Votes accepted, accepted again, refused by reason, and per request."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        super().__init__(registry or CollectorRegistry(), "ingest")
        self.votes_accepted = Counter(
            "podium_ingest_votes_accepted", "Votes newly accepted (acknowledged by Kafka).",
            registry=self.registry,
        )
        self.votes_duplicate = Counter(
            "podium_ingest_votes_duplicate", "Votes accepted again by a retry (vote_id seen "
            "before): answered 202, not counted twice.", registry=self.registry,
        )
        self.votes_rejected = Counter(
            "podium_ingest_votes_rejected", "Votes refused, by reason (invalid, unknown_model, "
            "too_large, kafka_unavailable, redis_unavailable, overloaded, unauthorized, "
            "rate_limited, client_disconnected, other).", ["reason"],
            registry=self.registry,
        )
        self.sampling_tokens = Counter(
            "podium_ingest_sampling_tokens", "Votes that brought a next-battle sampling token, "
            "by result: the policy of a verified one (uniform, active), or why it counts "
            "unsampled (forged, expired, mismatched, replayed).", ["result"],
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "podium_ingest_batch_votes", "Votes per accepted request.", buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
