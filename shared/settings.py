"""Typed settings, one class per service, all read from ``PODIUM_*`` environment variables.

Nothing is built at import time: entrypoints call ``IngestSettings()`` etc. and pass the
object to the service's wiring function; tests build their own.
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.keys import KeyLayout
from shared.topics import Topics


class PodiumSettings(BaseSettings):
    """Settings every service needs."""

    model_config = SettingsConfigDict(env_prefix="PODIUM_", extra="ignore")

    kafka_bootstrap: str = Field(default="127.0.0.1:9092", description="Kafka bootstrap servers.")
    redis_url: str = Field(default="redis://127.0.0.1:6380/0", description="Redis URL.")
    topic_prefix: str = Field(default="", description="Prefix of every Kafka topic name.")
    key_prefix: str = Field(
        default="podium", pattern=r"^[A-Za-z0-9_.-]+$", description="Prefix of every Redis key."
    )
    votes_partitions: int = Field(
        default=4, ge=1, le=1024, description="Partitions of the votes topic (arenas spread)."
    )
    log_level: str = Field(default="INFO", description="Python log level.")

    @property
    def topics(self) -> Topics:
        return Topics(self.topic_prefix)

    @property
    def keys(self) -> KeyLayout:
        return KeyLayout(self.key_prefix)


class IngestSettings(PodiumSettings):
    """Settings of services/ingest (env ``PODIUM_INGEST_*`` plus the common ones)."""

    ingest_host: str = "127.0.0.1"
    ingest_port: int = Field(default=8001, ge=0, le=65535)
    ingest_max_batch: int = Field(default=10_000, ge=1, description="Most votes in one batch.")
    ingest_max_body_bytes: int = Field(
        default=16 * 1024 * 1024, ge=1024, description="Request body size limit (413 above)."
    )
    ingest_kafka_ack_timeout_s: float = Field(
        default=5.0, gt=0, description="How long to wait for Kafka's acknowledgement (503 after)."
    )
    ingest_dedupe_window_s: int = Field(
        default=24 * 3600, ge=0, description="How long a vote_id is remembered (0 = off)."
    )


class RatingSettings(PodiumSettings):
    """Settings of services/rating (env ``PODIUM_RATING_*`` plus the common ones)."""

    rating_app_id: str = Field(default="podium-rating", description="Faust app id and group.")
    rating_batch_max: int = Field(default=5000, ge=1, description="Most votes in one batch.")
    rating_batch_within_s: float = Field(
        default=0.05, gt=0, description="Longest wait to fill a batch, seconds."
    )
    rating_preliminary_votes: int = Field(
        default=300, ge=0, description="Models with fewer votes are flagged preliminary."
    )
    rating_session_timeout_s: float = Field(
        default=10.0, ge=1, le=300, description="Kafka group session timeout: how long the "
        "partitions of a killed worker wait before a restarted one gets them (faust: 60)."
    )
    rating_fit_tol: float = Field(
        default=1e-12, gt=0, description="Newton convergence (theta units): small enough that "
        "a fit does not depend on its warm start (rebuilds match live scores within 1e-9)."
    )
    rating_rebuild_sync_timeout_s: float = Field(
        default=600.0, gt=0, description="How long a rebuild waits to catch up with the live "
        "state before it gives up without switching."
    )


class ApiSettings(PodiumSettings):
    """Settings of services/api (env ``PODIUM_API_*`` plus the common ones)."""

    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8000, ge=0, le=65535)
