"""Settings of services/api: ``PodiumSettings`` and ``HttpSettings`` plus ``PODIUM_API_*``
(board read caching, rank-change streams, listing and preliminary policies, next battles).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from shared.settings.base import HttpSettings


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
