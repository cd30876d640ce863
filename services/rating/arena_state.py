"""What the rating worker keeps of an arena between batches, and the replay arithmetic."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from services.rating.arena_slices import ArenaSlice, RawRecord, fold, style_battles
from services.rating.engine import BattleColumns, PairCounts
from shared.events import Vote


@dataclass
class ArenaState:
    """What the worker knows of an arena, valid while the arena's version in Redis equals
    ``version`` (every apply bumps it; the Lua script refuses an apply from a stale state)."""

    version: int
    counts: dict[str, PairCounts]
    elo: dict[str, dict[str, float]]
    battles: dict[str, BattleColumns] = field(default_factory=dict)  # views loaded so far

    def absorb(
        self, sl: ArenaSlice, elo_after: Mapping[str, Mapping[str, float]], version: int
    ) -> None:
        for view, triples in sl.triples().items():
            self.counts[view].add_many(triples)
            self.elo[view].update(elo_after.get(view, {}))
        for view, columns in style_battles(sl).items():
            if view in self.battles:
                self.battles[view].extend(columns)
        self.version = version


# the same few thousand fields come back batch after batch (bounded: a field is ~60 bytes)


def rest_after(
    sl: ArenaSlice, votes: list[tuple[RawRecord, Vote]], fence: int
) -> ArenaSlice | None:
    """What of ``sl`` lies after ``fence`` (a replay overlapping what was applied)."""
    key = (sl.arena, sl.topic, sl.partition)
    rest = fold([(r, v) for r, v in votes if (v.arena, r.topic, r.partition) == key],
                after={key: fence})
    return rest[0] if rest else None
