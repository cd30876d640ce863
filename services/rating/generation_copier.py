"""Following the generations of the Redis key space (services/rating/rebuild.py): batches are
applied to the live generation, and copied into the one a rebuild is filling."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from services.rating.arena_slices import ArenaSlice, RawRecord
from services.rating.arena_state import rest_after
from services.rating.counts_applier import CountsApplier
from services.rating.online_elo import EloOptions, online_elo
from services.rating.store import ALREADY_APPLIED, BEHIND, PARTLY_APPLIED, STALE, RatingStore
from shared.events import Vote
from shared.keys import KeyLayout

log = logging.getLogger(__name__)

Fences = dict[tuple[str, str], int]  # (arena, fence field) -> offset


class GenerationCopier:
    """Keeps ``applier`` on the live generation of ``base``'s key space and copies each batch
    into the other generation (the one being rebuilt, or the new live one after a switch).
    ``refit_all`` is set at the start and after each switch: every board of the new live
    generation is then refitted there."""

    def __init__(self, applier: CountsApplier, base: KeyLayout, elo: EloOptions) -> None:
        self._applier = applier
        self._base = base
        self._elo = elo
        self.refit_all = True

    async def use_live_generation(self, slices: Sequence[ArenaSlice]) -> Fences:
        """Write to the live generation; return each slice's fence before it is applied there
        (what a copy into another generation requires)."""
        store = self._applier.store
        live = (await store.generations(self._base)).active
        if live != store.keys:
            self._switch_to(live)
            store = self._applier.store
        # the partitions' arena sets get each arena before its first apply (resume.py)
        registry: dict[str, set[str]] = {}
        for sl in slices:
            registry.setdefault(self._base.partition_arenas(sl.topic, sl.partition),
                                set()).add(sl.arena)
        fences = await store.read_fences_and_register({sl.arena for sl in slices}, registry)
        return {(sl.arena, sl.fence_field): fences[sl.arena].get(sl.fence_field, -1)
                for sl in slices}

    async def copy_to_other_generations(
        self,
        slices: Sequence[ArenaSlice],
        votes: list[tuple[RawRecord, Vote]],
        fences_before: Fences,
    ) -> None:
        """Copy the batch into the generation being rebuilt (and into the new live one if the
        switch happened meanwhile). Read after the live apply, so no batch misses a switch; a
        copy is only made where that generation already holds everything before the slice."""
        store = self._applier.store
        gens = await store.generations(self._base)
        for layout in {gens.active, gens.next} - {store.keys, None}:
            assert layout is not None
            target = store.for_keys(layout)
            for sl in slices:
                required = fences_before[(sl.arena, sl.fence_field)]
                status = await self._copy_slice(target, sl, votes, required)
                if status == BEHIND and layout == gens.active:
                    log.error("generation %s is behind at %s of %s (fence < %d)",
                              layout.prefix, sl.fence_field, sl.arena, required)
            await target.register_arenas({sl.arena for sl in slices})
        if gens.active != store.keys:  # switched while this batch was applied
            self._switch_to(gens.active)

    def _switch_to(self, live: KeyLayout) -> None:
        log.info("rating state is now in key space %s", live.prefix)
        self._applier.switch_to(live)
        self.refit_all = True

    async def _copy_slice(
        self,
        target: RatingStore,
        sl: ArenaSlice,
        votes: list[tuple[RawRecord, Vote]],
        required_fence: int,
    ) -> int:
        """Apply a slice into another generation (no cached state there); returns the status."""
        while True:
            snapshot = await target.load(sl.arena, sl.increments, counts=False)
            elo_after = online_elo(sl, snapshot.elo, self._elo)
            result = await target.apply(sl, snapshot.version, elo_after, required_fence)
            if result.status == STALE:
                continue
            if result.status != PARTLY_APPLIED:
                return result.status
            rest = rest_after(sl, votes, result.fence)
            if rest is None:
                return ALREADY_APPLIED
            sl = rest
