"""Pure batch logic of the rating worker: decode raw Kafka records, route bad ones to dead
letters, and fold the good ones into per-arena count increments with their offset range."""

from __future__ import annotations

import base64
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from services.rating.engine import STYLE_FEATURES, BattleColumns, EloState
from services.rating.packed_counts import encode_increments
from shared.events import Outcome, StyleFeatures, Vote, decode_vote_record
from shared.keys import count_field, parse_count_field


@dataclass(frozen=True)
class EloOptions:
    """Online Elo as FastChat's compute_online_elo: K=4, scale 400, base 10, init 1000."""

    k: float = 4.0


@dataclass(frozen=True)
class RawRecord:
    """One Kafka record as the worker received it."""

    topic: str
    partition: int
    offset: int
    value: bytes | None


StyleRow = tuple[int, ...]  # one side's style features, in STYLE_FEATURES order


@dataclass(frozen=True)
class Battle:
    model_a: str
    model_b: str
    winner: Outcome
    views: tuple[str, ...]
    style_a: StyleRow | None = None  # both sides' style, when the vote carried it
    style_b: StyleRow | None = None


def style_row(features: StyleFeatures) -> StyleRow:
    return tuple(int(getattr(features, name)) for name in STYLE_FEATURES)


@dataclass(frozen=True)
class DeadLetter:
    """A record that could not be decoded as a vote, with why and where it came from."""

    reason: str
    record: RawRecord

    def to_json(self, now: datetime) -> dict[str, Any]:
        raw = self.record.value or b""
        return {
            "reason": self.reason,
            "topic": self.record.topic,
            "partition": self.record.partition,
            "offset": self.record.offset,
            "value_b64": base64.b64encode(raw).decode(),
            "dead_lettered_at": now.isoformat(),
        }


@dataclass
class ArenaSlice:
    """The votes of one arena from one topic partition in a batch, as count increments."""

    arena: str
    topic: str
    partition: int
    first_offset: int
    last_offset: int
    increments: dict[str, Counter[str]] = field(default_factory=dict)  # view -> field -> n
    battles: list[Battle] = field(default_factory=list)  # counted battles, in offset order

    @property
    def fence_field(self) -> str:
        return f"{self.topic}/{self.partition}"


def decode(records: Iterable[RawRecord]) -> tuple[list[tuple[RawRecord, Vote]], list[DeadLetter]]:
    votes: list[tuple[RawRecord, Vote]] = []
    dead: list[DeadLetter] = []
    for rec in records:
        if rec.value is None:
            dead.append(DeadLetter("empty record value", rec))
            continue
        try:
            votes.extend((rec, vote) for vote in decode_vote_record(rec.value))
        except ValidationError as exc:
            reason = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'value'}: {e['msg']}"
                for e in exc.errors(include_url=False)
            )
            dead.append(DeadLetter(f"invalid vote: {reason}"[:2000], rec))
    return votes, dead


def fold(
    votes: Sequence[tuple[RawRecord, Vote]],
    after: dict[tuple[str, str, int], int] | None = None,
) -> list[ArenaSlice]:
    """Group votes by (arena, topic, partition) into count increments.

    ``after`` maps (arena, topic, partition) to an offset: votes at or below it are left out
    (they were applied before). Non-anonymous battles advance the offset range but add no counts,
    as on LMArena only anonymous battles count; so do excluded votes (duplicate prompts past the
    cap, quarantined voters: docs/security.md).
    """
    slices: dict[tuple[str, str, int], ArenaSlice] = {}
    # stable sort: votes of one batch record (same offset) keep their order in the record
    for rec, vote in sorted(votes, key=lambda rv: (rv[0].topic, rv[0].partition, rv[0].offset)):
        key = (vote.arena, rec.topic, rec.partition)
        if after is not None and rec.offset <= after.get(key, -1):
            continue
        sl = slices.get(key)
        if sl is None:
            sl = slices[key] = ArenaSlice(vote.arena, rec.topic, rec.partition, rec.offset,
                                          rec.offset)
        sl.first_offset = min(sl.first_offset, rec.offset)
        sl.last_offset = max(sl.last_offset, rec.offset)
        if not vote.anonymous or vote.excluded is not None:
            continue  # kept in Kafka (and the quarantine), not counted
        f = count_field(vote.model_a, vote.model_b, vote.winner)
        views = vote.views()
        for view in views:
            sl.increments.setdefault(view, Counter())[f] += 1
        style = vote.style
        sl.battles.append(Battle(
            vote.model_a, vote.model_b, vote.winner, tuple(views),
            None if style is None else style_row(style.model_a),
            None if style is None else style_row(style.model_b),
        ))
    return list(slices.values())


def style_battles(sl: ArenaSlice) -> dict[str, BattleColumns]:
    """Per view, the slice's counted battles that carry style features (in offset order)."""
    out: dict[str, BattleColumns] = {}
    for b in sl.battles:
        if b.style_a is None or b.style_b is None:
            continue
        for view in b.views:
            columns = out.get(view)
            if columns is None:
                columns = out[view] = BattleColumns(capacity=16)
            columns.append(b.model_a, b.model_b, b.winner, b.style_a, b.style_b)
    return out


def lua_args(
    sl: ArenaSlice,
    version: int,
    elo: Mapping[str, Mapping[str, float]] | None = None,
    required_fence: int = -1,
) -> tuple[list[str], list[str | int | bytes]]:
    """The view order and ARGV of apply_batch.lua for one slice (keys are added by the store).

    Counts go as the slice's model list and one string of packed increments
    (``packed_counts.encode_increments``): the script maps the models to the arena's model
    numbers. ``elo`` maps view -> model -> the model's online-Elo
    rating after this slice. The trailing section holds the slice's style battles: (view index,
    ``BattleColumns`` chunk) pairs, then their number as the last argument."""
    views = sorted(sl.increments)
    models, increments = encode_increments([
        {parse_count_field(fld): n for fld, n in sl.increments[view].items()} for view in views])
    argv: list[str | int | bytes] = [version, sl.fence_field, sl.first_offset, sl.last_offset,
                                     required_fence, len(views), *views, len(models), *models,
                                     increments]
    for index, view in enumerate(views, start=1):
        for model, rating in sorted((elo or {}).get(view, {}).items()):
            argv.extend((index, model, repr(rating)))
    chunks = style_battles(sl)
    for index, view in enumerate(views, start=1):
        if view in chunks:
            argv.extend((index, chunks[view].to_bytes()))
    argv.append(sum(1 for view in views if view in chunks))
    return views, argv


def online_elo(
    sl: ArenaSlice, current: Mapping[str, Mapping[str, float]], options: EloOptions
) -> dict[str, dict[str, float]]:
    """Each view's online-Elo ratings after the slice's battles (only models that moved)."""
    states = {view: EloState(k=options.k, ratings=dict(current.get(view, {})))
              for view in sl.increments}
    moved: dict[str, set[str]] = {view: set() for view in sl.increments}
    for b in sl.battles:
        for view in b.views:
            states[view].apply(b.model_a, b.model_b, b.winner)
            moved[view].update((b.model_a, b.model_b))
    return {view: {m: states[view].ratings[m] for m in moved[view]} for view in states}


def touched_views(slices: Iterable[ArenaSlice]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = defaultdict(set)
    for sl in slices:
        out[sl.arena].update(sl.increments)
    return dict(out)
