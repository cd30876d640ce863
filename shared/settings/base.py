"""The settings every service reads (``PodiumSettings``) and the HTTP edge's limits, common to
ingest and the api (``HttpSettings``); each service's class adds its own to one of them.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.keys import KeyLayout
from shared.topics import Topics


class PodiumSettings(BaseSettings):
    """Settings every service needs."""

    model_config = SettingsConfigDict(env_prefix="PODIUM_", extra="ignore")

    kafka_bootstrap: str = Field(default="127.0.0.1:9092", description="Kafka bootstrap servers.")
    redis_url: str = Field(
        default="redis://127.0.0.1:6380/0",
        description="Redis URL: `redis://host:port/db` for one Redis, "
        "`redis+cluster://host:port,host:port,.../0` for a Redis Cluster (every node listed is a "
        "seed; db 0 only; `rediss+cluster://` with TLS).",
    )
    topic_prefix: str = Field(default="", description="Prefix of every Kafka topic name.")
    key_prefix: str = Field(
        default="podium", pattern=r"^[A-Za-z0-9_.-]+$", description="Prefix of every Redis key."
    )
    votes_partitions: int = Field(
        default=4, ge=1, le=1024, description="Partitions of the votes topic (arenas spread)."
    )
    redis_max_connections: int = Field(
        default=100, ge=1, le=10_000,
        description="Most Redis connections of a service's request pool (ingest, api): a request "
        "that finds them all busy waits for one (see redis_pool_timeout_s).",
    )
    redis_pool_timeout_s: float = Field(
        default=2.0, gt=0, le=60,
        description="Longest wait of a request for a free Redis connection; after it the request "
        "is answered 503 with Retry-After (load shed, not an error).",
    )
    redis_retries: int = Field(
        default=3, ge=0, le=20,
        description="Retries of a Redis command whose connection failed (e.g. Redis restarted), "
        "each on a fresh connection after a short backoff (at most 0.5 s); then 503 + "
        "Retry-After.",
    )
    http_max_requests_in_flight: int = Field(
        default=64, ge=1, le=10_000,
        description="Requests an HTTP service (ingest, api) works on at once, besides probes, "
        "metrics, streams and the fast paths; more wait their turn in arrival order (keep it "
        "below redis_max_connections: an admitted request then never queues for a connection "
        "behind all the others, which under overload would time nearly every request out).",
    )
    http_queue_timeout_s: float = Field(
        default=5.0, gt=0, le=120,
        description="Longest wait of a request for its turn (http_max_requests_in_flight); "
        "after it the request is answered 503 with Retry-After (load shed).",
    )
    records_check_s: float = Field(
        default=2.0, gt=0, le=300,
        description="How often ingest and the rating worker check that Redis still holds what "
        "their systems of record (the compacted models, clients and quarantine topics, and the "
        "scores topic) hold; when Redis lost it (wiped, replaced), they replay the topic into "
        "it, and /readyz says restoring until done.",
    )
    sampling_secret: SecretStr | None = Field(
        default=None,
        description="HMAC key of next-battle sampling tokens: the api signs the pairs it serves, "
        "ingest verifies the token a vote brings back (same value on both). Unset: no tokens are "
        "issued and every token sent is counted unsampled.",
    )
    sampling_token_ttl_s: int = Field(
        default=3600, ge=1, le=7 * 86_400,
        description="How long a sampling token is valid after it was issued; a vote bringing "
        "an older one is counted unsampled (never refused).",
    )
    sampling_window_s: int = Field(
        default=86_400, ge=3600, le=7 * 86_400,
        description="The sampling report's recent window: battles and shares over the last this "
        "many seconds, to the hour (votes are counted in hourly buckets by the time ingest "
        "received them; the rating worker keeps the buckets this long past their hour, the api "
        "sums the ones the window covers). Same value on both.",
    )
    log_level: str = Field(default="INFO", description="Python log level.")
    log_format: Literal["text", "json"] = Field(
        default="text", description="Log lines for people (text) or one JSON object a line "
        "(json), with the request id, vote id or batch when set."
    )

    @property
    def topics(self) -> Topics:
        return Topics(self.topic_prefix)

    @property
    def keys(self) -> KeyLayout:
        return KeyLayout(self.key_prefix)


class HttpSettings(PodiumSettings):
    """Limits of the HTTP edge, common to the HTTP services (ingest, api): enforced by the
    server before a request reaches the app (services/common/uvicorn_internals.py)."""

    http_max_header_bytes: int = Field(
        default=64 * 1024, ge=1024, le=16 * 1024 * 1024,
        description="Largest request head (request line and headers), bytes: above it the "
        "connection is answered 431 and closed.",
    )
    http_max_url_bytes: int = Field(
        default=8 * 1024, ge=256, le=1024 * 1024,
        description="Longest request target (path and query), bytes: above it the connection "
        "is answered 414 and closed (WebSocket upgrades too).",
    )
    http_request_timeout_s: float = Field(
        default=30.0, gt=0, le=3600,
        description="A request's head and body must arrive within this many seconds of its "
        "first byte (of the connection, for its first request); else 408 and the connection "
        "is closed.",
    )
