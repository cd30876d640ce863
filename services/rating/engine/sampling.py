"""Next-battle sampling: which pair of models to show next, as a probability per pair.

Pure math (numpy/scipy): the rating worker builds a :class:`PairSampler` per board and policy
after its refits and stores it (``encode``); the api decodes it and draws pairs (``draw``).

Policies: ``uniform`` (every eligible pair alike) and ``active`` (pairs in proportion to how much
one more vote on them is expected to shrink the uncertainty of the published top-k order: for
each adjacent pair of the top k, the reduction of the variance of their score difference, by
Sherman-Morrison on the Fisher information, weighted by the probability that their order is
wrong). Both then get, in this order: a new-model boost (pairs with a model that has fewer than
``new_model_votes`` votes weigh ``new_model_boost`` times more), a per-organization cap (an
organization's share of appearances is scaled down to ``org_cap``), and an exploration floor
(a share ``floor`` of all battles is spread evenly over the eligible pairs, so every eligible
pair keeps probability >= floor / pairs). Models not eligible (deprecated) get no pair.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
from numpy.typing import NDArray
from scipy.linalg import LinAlgError, cho_factor, cho_solve
from scipy.special import expit, ndtr

from services.rating.engine.counts import PairCounts
from services.rating.engine.pairs import FloatVector
from shared.sampling_model import POLICIES, REASONS, PairSampler, Policy, Reason

__all__ = ["POLICIES", "REASONS", "BoardState", "PairSampler", "Policy", "Reason",
           "SamplingOptions", "active_gain", "build_sampler", "fisher_covariance"]

_REASON_CODE: Final[dict[str, int]] = {name: k for k, name in enumerate(REASONS)}
_CAP_ROUNDS: Final = 30


@dataclass(frozen=True, slots=True)
class SamplingOptions:
    """How the pair probabilities are shaped (see the module docstring)."""

    floor: float = 0.1
    new_model_boost: float = 5.0
    new_model_votes: int = 3000
    org_cap: float = 1.0
    top_k: int = 20
    settled_weight: float = 0.05  # weight of a top-k pair whose order is surely right

    def __post_init__(self) -> None:
        if not 0.0 <= self.floor <= 1.0:
            raise ValueError(f"floor must be in [0, 1], got {self.floor}")
        if not self.new_model_boost >= 1.0:
            raise ValueError(f"new_model_boost must be >= 1, got {self.new_model_boost}")
        if self.new_model_votes < 0:
            raise ValueError(f"new_model_votes must be >= 0, got {self.new_model_votes}")
        if not 0.0 < self.org_cap <= 1.0:
            raise ValueError(f"org_cap must be in (0, 1], got {self.org_cap}")
        if self.top_k < 2:
            raise ValueError(f"top_k must be >= 2, got {self.top_k}")
        if self.settled_weight < 0.0:
            raise ValueError(f"settled_weight must be >= 0, got {self.settled_weight}")


@dataclass(frozen=True, slots=True)
class BoardState:
    """What the sampler needs of a board: its models (sorted ids), fitted theta (natural-log
    units), battles per pair, votes per model, and who may be shown and by whom it is made."""

    models: tuple[str, ...]
    theta: FloatVector
    battles: NDArray[np.int64]
    votes: NDArray[np.int64]
    eligible: NDArray[np.bool_]
    organizations: tuple[str | None, ...]

    @classmethod
    def of(cls, counts: PairCounts, theta: FloatVector, eligible: Sequence[bool] | None = None,
           organizations: Mapping[str, str | None] | None = None) -> BoardState:
        battles = counts.battles()
        orgs = organizations or {}
        return cls(
            models=counts.models,
            theta=np.asarray(theta, dtype=np.float64),
            battles=battles,
            votes=battles.sum(axis=1),
            eligible=np.ones(len(counts.models), np.bool_) if eligible is None
            else np.asarray(eligible, dtype=np.bool_),
            organizations=tuple(orgs.get(m) for m in counts.models),
        )


def build_sampler(state: BoardState, policy: Policy, options: SamplingOptions) -> PairSampler:
    """The pair probabilities of ``policy`` on a board (module docstring for the recipe)."""
    eligible = np.flatnonzero(state.eligible)
    first, second = (eligible[k] for k in np.triu_indices(eligible.size, k=1))
    empty = np.zeros(0, np.float64)
    if first.size == 0:
        return PairSampler(state.models, policy, first, second, empty, np.zeros(0, np.uint8))
    base = (active_gain(state, options.top_k, options.settled_weight)[first, second]
            if policy == "active" else np.ones(first.size))
    if not (np.isfinite(base).all() and base.sum() > 0.0):
        base = np.ones(first.size)
    new = state.votes < options.new_model_votes
    boosted = new[first] | new[second]
    main = base * np.where(boosted, options.new_model_boost, 1.0)
    main = _capped(main / main.sum(), first, second, state.organizations, options.org_cap)
    floor = np.full(first.size, 1.0 / first.size)
    probability = (1.0 - options.floor) * main + options.floor * floor
    reason = _reasons(policy, (1.0 - options.floor) * main, options.floor * floor,
                      boosted & (options.new_model_boost > 1.0))
    return PairSampler(state.models, policy, first, second, probability, reason)


def _reasons(policy: Policy, main: FloatVector, floor: FloatVector,
             boosted: NDArray[np.bool_]) -> NDArray[np.uint8]:
    """Why each pair weighs what it does: the floor if that is most of its probability, else
    the boost if it was boosted, else the policy's own reason."""
    own = _REASON_CODE["information_gain" if policy == "active" else "uniform"]
    reason = np.where(boosted, _REASON_CODE["new_model_boost"], own)
    return np.where(floor >= main, _REASON_CODE["exploration_floor"], reason).astype(np.uint8)


def _capped(main: FloatVector, first: NDArray[np.intp], second: NDArray[np.intp],
            organizations: tuple[str | None, ...], cap: float) -> FloatVector:
    """``main`` with each organization's share of appearances scaled down to at most ``cap``
    (a few rounds of scale-and-renormalize; best effort when the cap cannot hold, e.g. with
    fewer than 1 / cap organizations). Models without an organization are not capped."""
    if cap >= 1.0:
        return main
    names = sorted({o for o in organizations if o is not None})
    if not names:
        return main
    code = {name: k for k, name in enumerate(names)}
    org = np.array([code.get(o, -1) if o is not None else -1 for o in organizations], np.intp)
    org_a, org_b = org[first], org[second]
    for _ in range(_CAP_ROUNDS):
        share = _org_shares(main, org_a, org_b, len(names))
        over = share > cap * (1.0 + 1e-9)
        if not over.any():
            break
        scale = np.ones(len(names) + 1)
        scale[:-1][over] = cap / share[over]
        main = main * scale[org_a] * scale[org_b]  # index -1: the 1.0 of "no organization"
        main = main / main.sum()
    return main


def _org_shares(main: FloatVector, org_a: NDArray[np.intp], org_b: NDArray[np.intp],
                n: int) -> FloatVector:
    a, b = org_a >= 0, org_b >= 0
    share = np.bincount(org_a[a], main[a] / 2.0, n) + np.bincount(org_b[b], main[b] / 2.0, n)
    return np.asarray(share, dtype=np.float64)


def fisher_covariance(state: BoardState, ridge: float = 1e-6) -> FloatVector:
    """Inverse of the Fisher information of theta (raw battle counts, ``p (1 - p)`` each) with
    a small ridge: the covariance the information gain is computed from."""
    theta = state.theta
    p = expit(theta[:, None] - theta[None, :])
    info = -(state.battles + state.battles.T) * p * (1.0 - p)
    np.fill_diagonal(info, 0.0)
    np.fill_diagonal(info, -info.sum(axis=1) + ridge * max(1.0, float(state.votes.sum())))
    try:
        factor = cho_factor(info, lower=True, check_finite=False)
        return np.asarray(cho_solve(factor, np.eye(info.shape[0]), check_finite=False),
                          dtype=np.float64)
    except LinAlgError:
        return np.asarray(np.linalg.pinv(info, hermitian=True), dtype=np.float64)


def active_gain(state: BoardState, top_k: int, settled_weight: float = 0.05) -> FloatVector:
    """``gain[i, j]``: expected reduction, by one more vote on (i, j), of the standard deviation
    of each adjacent top-k score difference, weighted by the probability that pair's order is
    wrong (plus ``settled_weight``). Only eligible models count toward the top k."""
    m = len(state.models)
    gain = np.zeros((m, m))
    eligible = np.flatnonzero(state.eligible)
    if eligible.size < 2:
        return gain
    cov = fisher_covariance(state)
    order = eligible[np.argsort(-state.theta[eligible], kind="stable")][:top_k]
    upper, lower = order[:-1], order[1:]
    # A[:, r] = cov (e_upper_r - e_lower_r); var_r = c_r' cov c_r
    a = cov[:, upper] - cov[:, lower]
    var = np.maximum(a[upper, np.arange(upper.size)] - a[lower, np.arange(upper.size)], 1e-18)
    sd = np.sqrt(var)
    wrong = ndtr(-np.abs(state.theta[upper] - state.theta[lower]) / sd)
    beta = (wrong + settled_weight) / (2.0 * sd)
    # sum_r beta_r (A_ir - A_jr)^2 = s_i + s_j - 2 (A diag(beta) A')_ij
    weighted = a * beta
    s = np.einsum("ir,ir->i", weighted, a)
    cross = weighted @ a.T
    numerator = s[:, None] + s[None, :] - 2.0 * cross
    p = expit(state.theta[:, None] - state.theta[None, :])
    w = p * (1.0 - p)
    d = np.diag(cov)
    spread = d[:, None] + d[None, :] - 2.0 * cov
    gain = w * np.maximum(numerator, 0.0) / (1.0 + w * np.maximum(spread, 0.0))
    np.fill_diagonal(gain, 0.0)
    return np.asarray(gain, dtype=np.float64)
