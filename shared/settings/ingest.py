"""Settings of services/ingest: ``PodiumSettings`` and ``HttpSettings`` plus ``PODIUM_INGEST_*``
(group commit, dedupe, client keys, releases, and the security settings of docs/security.md).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, SecretStr, StringConstraints

from shared.settings.base import HttpSettings

# ``arena/view`` (a view: ``overall``, a category, ``lang:{language}``, a ``+style`` twin)
BOARD_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}/(lang:)?[a-z0-9][a-z0-9_-]{0,63}(\+style)?$"


class IngestSettings(HttpSettings):
    """Settings of services/ingest (env ``PODIUM_INGEST_*`` plus the common ones)."""

    ingest_host: str = "127.0.0.1"
    ingest_port: int = Field(default=8001, ge=0, le=65535)
    ingest_max_batch: int = Field(default=10_000, ge=1, description="Most votes in one batch.")
    ingest_votes_per_record: int = Field(
        default=500, ge=1, le=2000,
        description="Votes of one arena per Kafka record (a JSON array); 1 = a record a vote.",
    )
    ingest_max_body_bytes: int = Field(
        default=16 * 1024 * 1024, ge=1024, description="Request body size limit (413 above)."
    )
    ingest_groups_in_flight: int = Field(
        default=4, ge=1, le=1024,
        description="Groups of concurrent vote requests being accepted at once; requests that "
        "arrive meanwhile wait and go together (fewer round trips per request under load).",
    )
    ingest_kafka_ack_timeout_s: float = Field(
        default=5.0, gt=0, description="How long to wait for Kafka's acknowledgement (503 after)."
    )
    ingest_dedupe_window_s: int = Field(
        default=24 * 3600, ge=0,
        description="How long a vote_id is remembered, at least (at most twice; 0 = off).",
    )
    ingest_dedupe_write_retry_s: float = Field(
        default=15.0, gt=0, le=600,
        description="How long the dedupe markers of votes Kafka acknowledged are retried before "
        "their 202 (long enough to ride out a Redis restart). Ids still unwritten after it are "
        "kept in process, consulted by later requests, and written in the background.",
    )
    ingest_in_flight_ttl_s: float = Field(
        default=120.0, gt=0, le=3600,
        description="How long a vote_id claimed by an ingest instance that is producing it "
        "stays claimed in Redis if that instance neither delivers it nor gives it up (it "
        "died): meanwhile another instance answers the id 503. Longer than a send can stay "
        "in flight in the producer (a broker failover).",
    )
    ingest_unremembered_max: int = Field(
        default=1_000_000, ge=1,
        description="Most vote ids kept in process while Redis cannot take their dedupe markers "
        "(the oldest are dropped, and logged, beyond it).",
    )
    ingest_client_keys_refresh_s: float = Field(
        default=1.0, gt=0, le=3600,
        description="A client key this process does not know is refused (401) without a Redis "
        "round trip while its copy of the registered keys is younger than this; an older copy "
        "is reloaded first (one HGETALL shared by every waiting request).",
    )
    ingest_auto_register_models: bool = Field(
        default=False,
        description="Register unknown models named by votes and scores (else 422).",
    )
    ingest_release_every_s: float = Field(
        default=0.0, ge=0, le=366 * 86_400,
        description="Publish a release of each scheduled board (ingest_release_boards) every "
        "this many seconds, at the multiples of it in UTC (86400: daily at 00:00 UTC); 0 = "
        "only by the admin endpoint. Replicas agree on the id: each release is published once.",
    )
    ingest_release_boards: list[
        Annotated[str, StringConstraints(pattern=BOARD_PATTERN)]] = Field(
        default_factory=list,
        description="Boards (`arena/view`, JSON list) the release schedule publishes; empty = "
        "every board.",
    )
    ingest_admin_token: SecretStr | None = Field(
        default=None,
        description="Admin key: bearer token of the /v1/admin endpoints (unset = disabled).",
    )
    # --- security (docs/security.md) ---
    ingest_require_auth: bool = Field(
        default=True,
        description="Writes need a registered client key (false: anonymous writes are allowed, "
        "a key that is sent is still checked; for tests and local experiments only).",
    )
    ingest_require_signature: bool = Field(
        default=False,
        description="Every write must carry an HMAC-SHA256 signature (else only clients "
        "registered with require_signature must sign).",
    )
    ingest_signature_window_s: int = Field(
        default=300, ge=1, le=3600,
        description="Largest clock difference of a signed request; replays are rejected for it.",
    )
    dev_api_key: SecretStr | None = Field(
        default=None,
        description="PODIUM_DEV_API_KEY: a client key registered (as client 'dev') at start-up.",
    )
    ingest_cors_origins: list[str] = Field(
        default_factory=list, description="Origins allowed by CORS (JSON list; empty = none)."
    )
    ingest_trust_forwarded_for: bool = Field(
        default=False,
        description="Take the client IP from X-Forwarded-For (only behind a trusted proxy).",
    )
    ingest_ip_requests_per_s: float = Field(default=500.0, gt=0, description="Per-IP rate.")
    ingest_ip_burst: int = Field(default=2000, ge=1, description="Per-IP burst (requests).")
    ingest_client_votes_per_s: float = Field(
        default=100_000.0, gt=0, description="Per-client rate, in votes (not requests)."
    )
    ingest_client_burst: int = Field(default=200_000, ge=1, description="Per-client burst.")
    ingest_voter_votes_per_s: float = Field(default=5.0, gt=0, description="Per-voter rate.")
    ingest_voter_burst: int = Field(default=500, ge=1, description="Per-voter burst (votes).")
    ingest_voter_daily_cap: int = Field(
        default=5000, ge=0, description="Most votes of one voter per UTC day (0 = no cap)."
    )
    ingest_prompt_hash_cap: int = Field(
        default=50, ge=0,
        description="Votes per (arena, prompt_hash) that count; later ones are kept but "
        "excluded (duplicate-prompt downsampling; 0 = no cap).",
    )
