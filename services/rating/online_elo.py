"""Online Elo of a slice's battles, the boards' secondary column (FastChat's
``compute_online_elo``): each view's ratings replayed over the battles in offset order, with
the arithmetic of ``engine.EloState.apply`` inlined (the same floats)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import chain
from operator import attrgetter

from services.rating.arena_slices import ArenaSlice, Battle
from services.rating.engine import EloState


@dataclass(frozen=True)
class EloOptions:
    """Online Elo as FastChat's compute_online_elo: K=4, scale 400, base 10, init 1000."""

    k: float = 4.0



def online_elo(
    sl: ArenaSlice, current: Mapping[str, Mapping[str, float]], options: EloOptions
) -> dict[str, dict[str, float]]:
    """Each view's online-Elo ratings after the slice's battles (only models that moved).

    One pass over the battles in offset order: each battle moves the ratings of every view it
    counts on (the views' ratings are independent, so this is each view's replay in order).
    A view's ratings are a list by the slice's model numbers while the battles are replayed;
    its lists and its models are looked up once per distinct views tuple (a slice has a few
    hundred), not once per battle and view."""
    battles = sl.battles
    models = list(dict.fromkeys(chain(map(_MODEL_A, battles), map(_MODEL_B, battles))))
    number = {m: i for i, m in enumerate(models)}
    init, base, scale = _ELO_DEFAULTS.init, _ELO_DEFAULTS.base, _ELO_DEFAULTS.scale
    lists_of: dict[str, list[float]] = {}
    groups: dict[tuple[str, ...], tuple[list[list[float]], list[Battle]]] = {}
    k = options.k
    score_a = _SCORE_A
    for b in battles:
        group = groups.get(b.views)
        if group is None:
            group = groups[b.views] = ([_ratings(lists_of, current, view, models, init)
                                        for view in b.views], [])
        ratings_list, members = group
        members.append(b)
        a, bb = number[b.model_a], number[b.model_b]
        s_a = score_a[b.winner]
        for ratings in ratings_list:  # EloState(k=k).apply, inlined: the same floats
            r_a = ratings[a]
            r_b = ratings[bb]
            e_a = 1.0 / (1.0 + base ** ((r_b - r_a) / scale))
            e_b = 1.0 / (1.0 + base ** ((r_a - r_b) / scale))
            ratings[a] = r_a + k * (s_a - e_a)
            ratings[bb] = r_b + k * (1.0 - s_a - e_b)
    moved: dict[str, set[str]] = {}
    for views, (_, members) in groups.items():
        in_group = _models_of(members)
        for view in views:
            seen = moved.get(view)
            if seen is None:
                moved[view] = set(in_group)
            else:
                seen |= in_group
    return {view: {m: lists_of[view][number[m]] for m in moved[view]} if view in moved else {}
            for view in sl.increments}


def _ratings(
    lists_of: dict[str, list[float]], current: Mapping[str, Mapping[str, float]], view: str,
    models: list[str], init: float,
) -> list[float]:
    """The view's ratings being replayed, by model number: ``current``'s, or ``init`` for a
    model it has none of (as ``EloState`` starts one); made on first use."""
    ratings = lists_of.get(view)
    if ratings is None:
        known = current.get(view, {})
        ratings = lists_of[view] = [known.get(m, init) for m in models]
    return ratings


def _models_of(battles: Sequence[Battle]) -> set[str]:
    models = set(map(_MODEL_A, battles))
    models.update(map(_MODEL_B, battles))
    return models


_MODEL_A, _MODEL_B = attrgetter("model_a"), attrgetter("model_b")


_SCORE_A: dict[str, float] = {"model_a": 1.0, "model_b": 0.0, "tie": 0.5, "tie_bothbad": 0.5}
_ELO_DEFAULTS = EloState()
