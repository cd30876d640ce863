"""The rating worker's per-vote apply steps as they were before the catch-up was made cheaper
(issue #17): a straightforward fold, online Elo and voter-screen decision, kept as the test
oracle that the faster code in services/rating must match exactly (the same counts, the same
Elo floats bit for bit, the same screen statistics and flags)."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from datetime import datetime

from services.rating.arena_slices import ArenaSlice, Battle, RawRecord, record_runs, style_row
from services.rating.engine import EloState
from services.rating.online_elo import EloOptions
from services.rating.screen_decision import ScreenDecision, ScreenState, WinProbability, evidence
from services.rating.voter_stats import ScreenOptions, Side, VoterStats, sides
from shared.events import Vote
from shared.keys import SAMPLING_BUCKET_S, count_field


def fold(
    votes: Sequence[tuple[RawRecord, Vote]],
    after: dict[tuple[str, str, int], int] | None = None,
) -> list[ArenaSlice]:
    """Each vote's counts, recent-window battles and Battle, one vote at a time."""
    slices: dict[tuple[str, str, int], ArenaSlice] = {}
    for rec, start, end in record_runs(votes):
        for i in range(start, end):
            vote = votes[i][1]
            key = (vote.arena, rec.topic, rec.partition)
            if after is not None and rec.offset <= after.get(key, -1):
                continue
            sl = slices.get(key)
            if sl is None:
                sl = slices[key] = ArenaSlice(vote.arena, rec.topic, rec.partition, rec.offset,
                                              rec.offset)
            sl.last_offset = max(sl.last_offset, rec.offset)
            if not vote.anonymous or vote.excluded is not None:
                continue
            views = tuple(vote.views())
            f = count_field(vote.model_a, vote.model_b, vote.winner)
            for view in views:
                sl.increments.setdefault(view, Counter())[f] += 1
            if vote.received_at is not None:
                hour = int(vote.received_at.timestamp()) // SAMPLING_BUCKET_S
                rk = (hour, views, vote.model_a, vote.model_b)
                sl.recent[rk] = sl.recent.get(rk, 0) + 1
            style = vote.style
            sl.battles.append(Battle(
                vote.model_a, vote.model_b, vote.winner, views,
                None if style is None else style_row(style.model_a),
                None if style is None else style_row(style.model_b)))
    return list(slices.values())


def online_elo(
    sl: ArenaSlice, current: Mapping[str, Mapping[str, float]], options: EloOptions
) -> dict[str, dict[str, float]]:
    """``EloState.apply`` of each of the slice's battles, view by view, in offset order."""
    states: dict[str, EloState] = {}
    moved: dict[str, set[str]] = defaultdict(set)
    for b in sl.battles:
        for view in b.views:
            state = states.get(view)
            if state is None:
                state = states[view] = EloState(k=options.k)
                state.ratings.update(current.get(view, {}))
            state.apply(b.model_a, b.model_b, b.winner)
            moved[view].update((b.model_a, b.model_b))
    return {view: {m: states[view].ratings[m] for m in moved[view]} if view in states else {}
            for view in sl.increments}


def decide(
    arena: str,
    votes: list[tuple[RawRecord, Vote]],
    state: ScreenState,
    win_probability: WinProbability,
    options: ScreenOptions,
    now: datetime,
) -> ScreenDecision:
    """The screen's decision, each vote scored by ``score`` on plain dicts."""
    flagged, fences, stats = state.flagged, state.fences, state.stats
    out = ScreenDecision()
    changed: set[str] = set()
    plain: dict[str, tuple[int, dict[str, list[float]]]] = {}  # voter -> votes, statistics
    for rec, start, end in record_runs(votes):
        fence_field = f"{rec.topic}/{rec.partition}"
        replay = rec.offset <= fences.get(fence_field, -1)
        if not replay:
            out.fences[fence_field] = max(out.fences.get(fence_field, -1), rec.offset)
        for i in range(start, end):
            vote = votes[i][1]
            voter = vote.voter
            assert voter is not None
            if voter not in flagged:
                if replay:
                    continue
                p_a = win_probability(arena, vote.model_a, vote.model_b)
                pair = sides(vote.model_a, vote.model_b, 0.5 if p_a is None else p_a, options)
                votes_of, models = plain.get(voter) or (stats[voter].votes, stats[voter].models)
                crossed = score(models, pair, vote.winner, options.threshold)
                plain[voter] = (votes_of + 1, models)
                stats[voter] = VoterStats(votes_of + 1, models)
                changed.add(voter)
                if crossed is None:
                    continue
                flagged.add(voter)
                out.flags[voter] = evidence(arena, voter, stats[voter], crossed, rec, now,
                                            options, vote.vote_id)
            out.marked.append((i, vote.model_copy(update={"excluded": "quarantined"})))
            if not replay:
                out.kept[voter].append(vote.model_dump_json().encode())
    for voter in sorted(changed):
        if len(stats[voter]):
            out.stats += (voter, stats[voter].dump())
        elif voter in state.stored:
            out.emptied.append(voter)
    return out


def score(
    models: dict[str, list[float]], pair: tuple[Side, Side], winner: str, threshold: float
) -> tuple[str, float] | None:
    """One vote's CUSUM steps on a voter's statistics (model -> [cusum, battles, wins,
    expected wins]; a model whose statistic is back at 0 is dropped), as the screen's docstring
    describes them; the model that crossed ``threshold`` with the highest value, or None."""
    crossed: tuple[str, float] | None = None
    for model, p, step_won, step_lost, winning_outcome in pair:
        won = winner == winning_outcome
        step = step_won if won else step_lost
        if model in models:
            cusum, battles, wins, expected = models[model]
            value = cusum + step
        else:
            battles, wins, expected = 0, 0, 0.0
            value = step
        if not value > 0.0:
            models.pop(model, None)
            continue
        models[model] = [value, battles + 1, wins + won, expected + p if battles else p]
        if value >= threshold and (crossed is None or value > crossed[1]):
            crossed = (model, value)
    return crossed
