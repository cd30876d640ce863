"""Typed settings, one class per service, all read from ``PODIUM_*`` environment variables.

Nothing is built at import time: entrypoints call ``IngestSettings()`` etc. and pass the
object to the service's wiring function; tests build their own.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, SecretStr, StringConstraints
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.keys import KeyLayout
from shared.topics import Topics

# ``arena/view`` (a view: ``overall``, a category, ``lang:{language}``, a ``+style`` twin)
BOARD_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}/(lang:)?[a-z0-9][a-z0-9_-]{0,63}(\+style)?$"


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


class RatingSettings(PodiumSettings):
    """Settings of services/rating (env ``PODIUM_RATING_*`` plus the common ones)."""

    rating_app_id: str = Field(default="podium-rating", description="Faust app id and group.")
    rating_batch_max: int = Field(default=5000, ge=1, description="Most votes in one batch.")
    rating_batch_within_s: float = Field(
        default=0.05, gt=0, description="Longest wait to fill a batch, seconds."
    )
    rating_apply_chunk_votes: int = Field(
        default=50_000, ge=1, description="Most votes screened and applied in one step of a "
        "batch (whole records): a catch-up's batches hold hundreds of thousands of votes, and "
        "each step's Redis calls stay this small (a retry repeats one step); the batch's boards "
        "are refitted once, after its last step.")
    rating_preliminary_votes: int = Field(
        default=300, ge=0, description="Models with fewer votes are flagged preliminary."
    )
    rating_history_interval_s: float = Field(
        default=300.0, ge=0, description="A model's history gets a point at every rank change "
        "and otherwise at most once per this many seconds; when the votes stop, its last state "
        "gets a point once this interval has passed."
    )
    rating_matrices_interval_s: float = Field(
        default=1.0, ge=0, description="A board's win-rate and predicted-probability matrices "
        "are rewritten at most once per this many seconds (0 = at every refit); a refit left "
        "unwritten is written when this interval has passed, also when no vote follows.",
    )
    rating_history_max_points: int = Field(
        default=5000, ge=1, description="Most history points kept per model and board."
    )
    rating_metrics_host: str = Field(
        default="127.0.0.1", description="Address of the worker's /healthz, /readyz, /metrics."
    )
    rating_metrics_port: int = Field(
        default=8002, ge=0, le=65535,
        description="Port of the worker's /healthz, /readyz, /metrics (0 = no HTTP endpoint).",
    )
    rating_screen_enabled: bool = Field(
        default=True, description="Run the per-voter outlier test and quarantine flagged voters."
    )
    rating_screen_threshold: float = Field(
        default=9.2, gt=0, description="CUSUM threshold of the outlier test (log-likelihood "
        "ratio; 9.2 = log 1e4).",
    )
    rating_screen_epsilon: float = Field(
        default=0.1, gt=0, lt=0.5, description="The alternative: a voter's favourite model wins "
        "with probability 1 - epsilon whenever it appears.",
    )
    rating_session_timeout_s: float = Field(
        default=10.0, ge=1, le=300, description="Kafka group session timeout: how long the "
        "partitions of a killed worker wait before a restarted one gets them (faust: 60)."
    )
    rating_stop_grace_s: float = Field(
        default=5.0, gt=0, le=300, description="At a stop (SIGTERM), how long the batch in "
        "flight may still take to finish (Redis or Kafka unreachable: it retries); past it, the "
        "batch is given up uncommitted (whoever gets its partition re-reads it, the fences count "
        "it once) and the worker exits."
    )
    rating_fit_tol: float = Field(
        default=1e-12, gt=0, description="Newton convergence (theta units): small enough that "
        "a fit does not depend on its warm start (rebuilds match live scores within 1e-9)."
    )
    rating_rank_change_window_s: float = Field(
        default=300.0, ge=0, le=86_400, description="Hysteresis of rank changes: the same move "
        "(a model's published rank going from one value to another, or one model passing "
        "another) is announced at most once per this many seconds each way; repeats within it "
        "are marked `damped` and left out of the `published`/`separated` feeds (0: no damping)."
    )
    rating_style_refit_s: float = Field(
        default=5.0, gt=0, le=3600, description="Cadence of the style-controlled boards "
        "(`{view}+style`): every this many seconds, boards with new style battles are refitted "
        "(warm-started) from every battle of the board."
    )
    rating_fence_check_s: float = Field(
        default=1.0, gt=0, le=3600, description="Every this many seconds (also when no votes "
        "come) the worker compares the fences it applied with Redis's; Redis holding less (a "
        "restart that lost its last second, a wipe) rewinds the partitions to what it holds."
    )
    rating_style_reg: float = Field(
        default=1.0, ge=0, description="L2 weight on the style coefficients (arena-rank's "
        "default 1.0, on the mean loss). It shrinks the coefficients strongly (about 6x on a "
        "length effect), so a model that wins by length keeps much of its lead; 0.001 lets "
        "the data speak."
    )
    rating_sampling_interval_s: float = Field(
        default=10.0, ge=0, le=3600, description="A board's next-battle samplers (one per "
        "policy) are recomputed from its live fit at most once per this many seconds, off the "
        "batch path (0 = after every refit); the last refit is always covered."
    )
    rating_sampling_floor: float = Field(
        default=0.1, ge=0, le=1, description="Exploration floor: this share of the battles "
        "is spread evenly over every eligible pair, whatever the policy."
    )
    rating_sampling_new_model_boost: float = Field(
        default=5.0, ge=1, le=1000, description="Pairs with a model that has fewer than "
        "rating_sampling_new_model_votes votes weigh this many times more (LMArena: 5)."
    )
    rating_sampling_new_model_votes: int = Field(
        default=3000, ge=0, description="Votes below which a model gets the new-model boost "
        "(LMArena: 3,000)."
    )
    rating_sampling_org_cap: float = Field(
        default=1.0, gt=0, le=1, description="Largest share of appearances one organization "
        "gets outside the exploration floor (1 = no cap)."
    )
    rating_sampling_top_k: int = Field(
        default=20, ge=2, le=1000, description="The `active` policy spends votes where they "
        "most narrow the CIs of adjacent pairs among the top this many models."
    )
    rating_rebuild_sync_timeout_s: float = Field(
        default=600.0, gt=0, description="How long a rebuild waits to catch up with the live "
        "state before it gives up without switching."
    )


class ApiSettings(HttpSettings):
    """Settings of services/api (env ``PODIUM_API_*`` plus the common ones)."""

    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8000, ge=0, le=65535)
    api_read_cache_s: float = Field(
        default=0.05, ge=0, le=5,
        description="While the api is not subscribed to board changes (Redis pub/sub down), a "
        "board read reuses a response checked against Redis this recently.",
    )
    api_read_recheck_s: float = Field(
        default=1.0, ge=0, le=60,
        description="While subscribed, a cached board response is kept until a change is "
        "announced, and re-checked against Redis at this age (bounds the staleness of a change "
        "nobody announced).",
    )
    api_heartbeat_s: float = Field(
        default=15.0, gt=0, description="Heartbeat interval of the rank-change streams."
    )
    api_stream_max_clients: int = Field(
        default=10_000, ge=1, description="Most concurrent rank-change streams (503 above)."
    )
    api_stream_buffer_events: int = Field(
        default=10_000, ge=1, description="Most recent rank changes each api process keeps in "
        "memory: a stream resuming within them is served from memory, an older Last-Event-ID "
        "by a catch-up read from Kafka. A stream whose client reads so slowly that the changes "
        "it has not been sent leave them gets an event `too-slow` and is closed.",
    )
    api_stream_catchup_max_events: int = Field(
        default=100_000, ge=0, description="Most rank changes replayed from Kafka for a "
        "Last-Event-ID older than the buffer; further behind, the stream gets an event "
        "`reload` (reload the standings, go on from its id).",
    )
    api_stream_max_per_address: int = Field(
        default=20, ge=1, description="Most concurrent rank-change streams (SSE and WebSocket) "
        "from one client address (429 above).",
    )
    api_trust_forwarded_for: bool = Field(
        default=False,
        description="Take the client address (per-address stream cap) from X-Forwarded-For "
        "(only behind a trusted proxy).",
    )
    api_min_votes_to_list: int = Field(
        default=0, ge=0,
        description="Listing threshold: a model with fewer votes on a board is left out of its "
        "default view (`listed: false`; `include_unlisted=true` shows it). LMArena lists a "
        "model after at least 1,000 votes (`1000`).",
    )
    api_preliminary_min_votes: int = Field(
        default=0, ge=0,
        description="Preliminary policy: a model with fewer votes on a board is `preliminary` "
        "there (on top of the rating service's `PODIUM_RATING_PRELIMINARY_VOTES` flag). "
        "E.g. `1000`, LMArena's minimum for a settled score.",
    )
    api_preliminary_min_fresh_votes: int = Field(
        default=0, ge=0,
        description="Preliminary policy: a model with a `public_since` in the registry stays "
        "`preliminary` on a board until it has this many votes there counted after its "
        "`public_since` was recorded (LMArena: pre-release scores stay preliminary \"until "
        "enough fresh votes have been collected after the model's public release\"; e.g. "
        "`1000`). 0: off.",
    )
    api_sampling_policy: dict[str, Literal["uniform", "active"]] = Field(
        default_factory=dict, description="Next-battle policy per arena (JSON object, e.g. "
        '`{"text": "uniform"}`); arenas not named use api_sampling_default_policy.',
    )
    api_sampling_default_policy: Literal["uniform", "active"] = Field(
        default="active", description="Next-battle policy of arenas not in api_sampling_policy."
    )
    api_next_battle_max_n: int = Field(
        default=50, ge=1, le=1000, description="Most pairs one next-battle request may ask for."
    )
    api_sampling_cache_s: float = Field(
        default=1.0, ge=0, le=60, description="A board's sampler is re-read from Redis when the "
        "api's copy is older than this (the worker rewrites it every "
        "rating_sampling_interval_s)."
    )


class ClientSettings(BaseSettings):
    """Where the ``podium`` CLI (and ``shared.client``) finds the services (env ``PODIUM_*``)."""

    model_config = SettingsConfigDict(env_prefix="PODIUM_", extra="ignore")

    ingest_url: str = Field(default="http://127.0.0.1:8001", description="Base URL of ingest.")
    api_url: str = Field(default="http://127.0.0.1:8000", description="Base URL of the api.")
    ingest_admin_token: SecretStr | None = Field(
        default=None, description="Admin bearer token sent by `podium models add`."
    )
    client_api_key: SecretStr | None = Field(
        default=None, description="Client key sent with votes (`X-API-Key`; ingest needs one "
        "unless PODIUM_INGEST_REQUIRE_AUTH=false)."
    )
    client_sign_requests: bool = Field(
        default=False, description="Sign writes with HMAC-SHA256 of the client key (sends the "
        "key id, a timestamp and the signature instead of the key)."
    )
