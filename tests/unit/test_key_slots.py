"""Every group of keys used together (one Lua call, one MULTI) maps to one Redis Cluster slot
(shared/keys.py), in every generation of the key space."""

from __future__ import annotations

import pytest
from redis.crc import key_slot

from shared.keys import DEDUPE_SHARDS, KeyLayout

BASE = KeyLayout("podium")
VIEWS = ["overall", "coding", "overall+style"]


def slots(keys: list[str]) -> set[int]:
    return {key_slot(k.encode()) for k in keys}


def arena_keys(layout: KeyLayout, arena: str) -> list[str]:
    """apply_batch.lua, write_owed.lua, write_style_board.lua, the screen's MULTI, the
    rebuild's check (both generations)."""
    keys = [layout.fence(arena), layout.views(arena), layout.model_index(arena),
            layout.voter_stats(arena), layout.flagged(arena), layout.screen_fence(arena),
            layout.quarantine(arena, "voter-1"), layout.quarantine(arena, "voter:2"),
            layout.sampling_tally(arena), layout.sampling_nonce(arena, "0123abcd")]
    for view in VIEWS:
        keys += [layout.counts(arena, view), layout.elo(arena, view),
                 layout.battles(arena, view), layout.standings(arena, view),
                 layout.matrices(arena, view), layout.history(arena, view, "model/a"),
                 layout.scores(arena, view), layout.sampling(arena, view, "active"),
                 layout.sampling_recent(arena, view, 490_000),
                 layout.sampling_recent(arena, view, 490_001)]
    return keys


@pytest.mark.parametrize("arena", ["lmarena", "vision", "bench", "a:b", "x}y"])
def test_an_arenas_keys_of_every_generation_share_a_slot(arena: str) -> None:
    keys = [*arena_keys(BASE, arena), *arena_keys(BASE.generation(3), arena)]
    assert len(slots(keys)) == 1


def test_ingests_keys_share_a_slot() -> None:
    """limits.lua: client keys, voters of today and yesterday, token buckets and prompt
    counts, the dedupe sets of every shard; the dedupe-marker script: one set per shard."""
    keys = [BASE.clients(), BASE.voters(20_000), BASE.voters(19_999),
            BASE.limit("ip-bucket", "127.0.0.1"), BASE.limit("client-bucket", "dev"),
            BASE.limit("prompt", "abc")]
    keys += [BASE.dedupe_ids(shard, bucket)
             for shard in range(DEDUPE_SHARDS) for bucket in (100, 101, 102)]
    assert len(slots(keys)) == 1


def test_arenas_spread_over_slots() -> None:
    """The point of the arena tag: boards of different arenas land on different slots."""
    arenas = [f"arena-{n}" for n in range(8)]
    assert len(slots([BASE.fence(a) for a in arenas])) == len(arenas)


def test_a_releases_keys_share_a_slot() -> None:
    """apply_record.lua writes a release's document or summary with its offset: one slot."""
    keys = [BASE.release_docs(), BASE.release_offsets(), BASE.release_boards(),
            BASE.release_index("text/overall"), BASE.release_index("vision/lang:zh+style"),
            BASE.release_claim("text.overall.20261201T000000Z")]
    assert len(slots(keys)) == 1
