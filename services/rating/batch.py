"""Pure batch logic of the rating worker: decode raw Kafka records, route bad ones to dead
letters, and fold the good ones into per-arena count increments with their offset range."""

from __future__ import annotations

import base64
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from shared.events import Vote
from shared.keys import count_field


@dataclass(frozen=True)
class RawRecord:
    """One Kafka record as the worker received it."""

    topic: str
    partition: int
    offset: int
    value: bytes | None


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
            votes.append((rec, Vote.model_validate_json(rec.value)))
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
    as on LMArena only anonymous battles count.
    """
    slices: dict[tuple[str, str, int], ArenaSlice] = {}
    for rec, vote in votes:
        key = (vote.arena, rec.topic, rec.partition)
        if after is not None and rec.offset <= after.get(key, -1):
            continue
        sl = slices.get(key)
        if sl is None:
            sl = slices[key] = ArenaSlice(vote.arena, rec.topic, rec.partition, rec.offset,
                                          rec.offset)
        sl.first_offset = min(sl.first_offset, rec.offset)
        sl.last_offset = max(sl.last_offset, rec.offset)
        if not vote.anonymous:
            continue
        f = count_field(vote.model_a, vote.model_b, vote.winner)
        for view in vote.views():
            sl.increments.setdefault(view, Counter())[f] += 1
    return list(slices.values())


def lua_args(sl: ArenaSlice) -> tuple[list[str], list[str | int]]:
    """The view order and ARGV of apply_batch.lua for one slice (keys are added by the store)."""
    views = sorted(sl.increments)
    argv: list[str | int] = [sl.fence_field, sl.first_offset, sl.last_offset, len(views), *views]
    for index, view in enumerate(views, start=1):
        for fld, n in sorted(sl.increments[view].items()):
            argv.extend((index, fld, n))
    return views, argv


def touched_views(slices: Iterable[ArenaSlice]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = defaultdict(set)
    for sl in slices:
        out[sl.arena].update(sl.increments)
    return dict(out)
