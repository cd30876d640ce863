"""Pure batch logic of the rating worker: decode raw Kafka records, route bad ones to dead
letters, and fold the good ones into per-arena count increments with their offset range."""

from __future__ import annotations

import base64
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from itertools import repeat
from typing import Any, NamedTuple

from pydantic import ValidationError

from services.rating.engine import STYLE_FEATURES, BattleColumns
from services.rating.engine.counts import Triple
from services.rating.packed_counts import encode_increments
from shared.events import Outcome, StyleFeatures, Vote, decode_vote_record
from shared.keys import SAMPLING_BUCKET_S, count_field, parse_count_field


@dataclass(frozen=True)
class RawRecord:
    """One Kafka record as the worker received it."""

    topic: str
    partition: int
    offset: int
    value: bytes | None


StyleRow = tuple[int, ...]  # one side's style features, in STYLE_FEATURES order
# (time bucket, views, model_a, model_b): the battles of one pair in one bucket of the recent
# window, counted once per vote (the views and both models are spread out at the apply)
RecentKey = tuple[int, tuple[str, ...], str, str]


class Battle(NamedTuple):  # a tuple: the fold makes one per counted vote, cheaply
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
    recent: dict[RecentKey, int] = field(default_factory=dict)  # battles by received hour
    _triples: dict[str, dict[Triple, int]] | None = field(
        default=None, init=False, repr=False, compare=False)

    def triples(self) -> dict[str, dict[Triple, int]]:
        """``increments`` with each count field parsed: view -> (model_a, model_b, outcome) ->
        n. Parsed once, for the apply's arguments and the cached counts (a slice is complete
        once folded: its increments do not change afterwards)."""
        if self._triples is None:
            self._triples = {
                view: {parse_count_field(fld): n for fld, n in counter.items()}
                for view, counter in self.increments.items()
            }
        return self._triples

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
            votes.extend(zip(repeat(rec), decode_vote_record(rec.value)))
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

    Each counted vote appends its count field to the lists of its views and its recent-window
    key to one list; the lists are counted at the end (``Counter`` counts a list in C). Views,
    fields and keys come in order of first appearance, as counting vote by vote would add them.
    """
    slices: dict[tuple[str, str, int], ArenaSlice] = {}
    tallies: dict[tuple[str, str, int], _Tally] = {}
    sl: ArenaSlice | None = None
    tally = _Tally()
    last_key: tuple[str, str, int] | None = None
    skip_to = -1
    last_received: datetime | None = None  # and its hour bucket
    hour = 0
    fields: dict[tuple[str, str, Outcome], str] = {}  # count_field of each, once per fold
    new_battle = tuple.__new__  # Battle(...) without NamedTuple's Python-level __new__
    for rec, start, end in record_runs(votes):  # votes by (topic, partition, offset, position)
        offset, topic, partition = rec.offset, rec.topic, rec.partition
        for i in range(start, end):
            vote = votes[i][1]
            key = (vote.arena, topic, partition)
            if key != last_key:
                last_key = key
                skip_to = -1 if after is None else after.get(key, -1)
                sl = slices.get(key)
                if sl is not None:
                    tally = tallies[key]
            if offset <= skip_to:
                continue
            if sl is None:
                sl = slices[key] = ArenaSlice(vote.arena, topic, partition, offset, offset)
                tally = tallies[key] = _Tally()
            elif offset > sl.last_offset:  # votes come in offset order
                sl.last_offset = offset
            if not vote.anonymous or vote.excluded is not None:
                continue  # kept in Kafka (and the quarantine), not counted
            a, b, winner = vote.model_a, vote.model_b, vote.winner
            f = fields.get((a, b, winner))
            if f is None:
                f = fields[(a, b, winner)] = count_field(a, b, winner)
            views = _views(vote)
            appends = tally.by_views.get(views)
            if appends is None:
                appends = tally.by_views[views] = tally.appends_of(views)
            for append in appends:
                append(f)
            received = vote.received_at
            if received is not None:  # ingest stamps every vote; older records lack it
                if received != last_received:  # the votes of one request share it
                    last_received = received
                    hour = int(received.timestamp()) // SAMPLING_BUCKET_S
                tally.recent.append((hour, views, a, b))
            style = vote.style
            if style is None:
                sl.battles.append(new_battle(Battle, (a, b, winner, views, None, None)))
            else:
                sl.battles.append(new_battle(Battle, (a, b, winner, views,
                                                      style_row(style.model_a),
                                                      style_row(style.model_b))))
    for key, sl in slices.items():
        tallies[key].count_into(sl)
    return list(slices.values())


class _Tally:
    """What ``fold`` gathers of one slice before counting: per view, the count field of each of
    its votes; per views tuple, the ``append`` of each of its views' lists; the recent-window
    key of each vote."""

    __slots__ = ("by_views", "fields_of", "recent")

    def __init__(self) -> None:
        self.fields_of: dict[str, list[str]] = {}
        self.by_views: dict[tuple[str, ...], list[Callable[[str], None]]] = {}
        self.recent: list[RecentKey] = []

    def appends_of(self, views: tuple[str, ...]) -> list[Callable[[str], None]]:
        appends = []
        for view in views:
            fields = self.fields_of.get(view)
            if fields is None:
                fields = self.fields_of[view] = []
            appends.append(fields.append)
        return appends

    def count_into(self, sl: ArenaSlice) -> None:
        for view, fields in self.fields_of.items():
            sl.increments[view] = Counter(fields)
        sl.recent.update(Counter(self.recent))


def record_runs(
    votes: Sequence[tuple[RawRecord, Vote]],
) -> list[tuple[RawRecord, int, int]]:
    """The runs of votes of one record, as (record, start, end) in (topic, partition, offset)
    order: the votes of a batch record are adjacent, so sorting the runs orders the votes as a
    stable sort of each vote by (topic, partition, offset) would, at one key per record."""
    runs: list[tuple[RawRecord, int, int]] = []
    start = 0
    for i in range(1, len(votes) + 1):
        if i == len(votes) or votes[i][0] is not votes[start][0]:
            runs.append((votes[start][0], start, i))
            start = i
    runs.sort(key=lambda run: (run[0].topic, run[0].partition, run[0].offset, run[1]))
    return runs


def _views(vote: Vote) -> tuple[str, ...]:
    """``vote.views()`` as a tuple, without the intermediate list."""
    language = vote.language
    if language:
        view = _LANGUAGE_VIEWS.get(language)
        if view is None:
            view = f"lang:{language}"
            if len(_LANGUAGE_VIEWS) < _LANGUAGE_VIEWS_KEPT:
                _LANGUAGE_VIEWS[language] = view
        return ("overall", *vote.categories, view)
    return ("overall", *vote.categories)


_LANGUAGE_VIEWS: dict[str, str] = {}  # language -> its view, for the first few languages seen
_LANGUAGE_VIEWS_KEPT = 1024


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


@dataclass(frozen=True)
class RecentWindow:
    """The sampling report's recent window as the apply writes it: ``seconds`` long, at
    ``now`` (unix time)."""

    seconds: int
    now: float

    def expire_at(self, bucket: int) -> int:
        """When a bucket's key expires (unix time): the window after the bucket's end, and one
        bucket more, so the report finds every bucket its window touches."""
        return (bucket + 2) * SAMPLING_BUCKET_S + self.seconds

    def live(self, bucket: int) -> bool:
        return self.expire_at(bucket) > self.now


def recent_section(
    sl: ArenaSlice, window: RecentWindow
) -> tuple[list[tuple[str, int]], list[str | int]]:
    """The slice's recent-window counts as apply_batch.lua takes them: the (view, bucket) of
    each bucket hash written, and per bucket its expiry, its number of models m, then m (model,
    battles) pairs. Buckets already past their expiry (an old vote replayed) are left out: the
    window no longer covers them."""
    by_views: dict[tuple[int, tuple[str, ...]], dict[str, int]] = {}  # first per views tuple:
    for (bucket, views, a, b), n in sl.recent.items():  # a slice has few distinct ones
        models = by_views.get((bucket, views))
        if models is None:
            models = by_views[(bucket, views)] = {}
        models[a] = models.get(a, 0) + n
        models[b] = models.get(b, 0) + n
    per_bucket: dict[tuple[str, int], dict[str, int]] = {}
    for (bucket, views), counted in by_views.items():
        if not window.live(bucket):
            continue
        for view in views:
            models = per_bucket.get((view, bucket))
            if models is None:
                models = per_bucket[(view, bucket)] = {}
            for model, n in counted.items():
                models[model] = models.get(model, 0) + n
    buckets = sorted(per_bucket)
    args: list[str | int] = []
    for key in buckets:
        models = per_bucket[key]
        args.extend((window.expire_at(key[1]), len(models)))
        for model in sorted(models):
            args.extend((model, models[model]))
    return buckets, args


def lua_args(
    sl: ArenaSlice,
    version: int,
    elo: Mapping[str, Mapping[str, float]] | None = None,
    required_fence: int = -1,
    recent: list[str | int] | None = None,
) -> tuple[list[str], list[str | int | bytes]]:
    """The view order and ARGV of apply_batch.lua for one slice (keys are added by the store).

    Counts go as the slice's model list and one string of packed increments
    (``packed_counts.encode_increments``): the script maps the models to the arena's model
    numbers. ``elo`` maps view -> model -> the model's online-Elo
    rating after this slice. Then the slice's style battles: (view index, ``BattleColumns``
    chunk) pairs; then ``recent`` (``recent_section``'s arguments, none by default) and its
    length; the number of style-battle pairs is the last argument."""
    views = sorted(sl.increments)
    triples = sl.triples()
    models, increments = encode_increments([triples[view] for view in views])
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
    argv.extend(recent or ())
    argv.append(len(recent or ()))
    argv.append(sum(1 for view in views if view in chunks))
    return views, argv


def touched_views(slices: Iterable[ArenaSlice]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = defaultdict(set)
    for sl in slices:
        out[sl.arena].update(sl.increments)
    return dict(out)
