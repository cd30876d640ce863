"""Settings of services/rating: ``PodiumSettings`` plus ``PODIUM_RATING_*`` (batching, the
fit, history, screening, style boards, next-battle sampling, rebuilds).
"""

from __future__ import annotations

from pydantic import Field

from shared.settings.base import PodiumSettings


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
