"""Voter quarantine decisions and their system of record, the quarantine topic (compacted; key
``arena/voter``, value the flag's evidence JSON, a tombstone on release): the rating worker
writes a flag, ingest's admin endpoint a release; Redis holds the copy (``{p}:{arena}:flagged``
with each record's offset in ``{p}:{arena}:flagged-offsets``). A release also writes the ids of
the votes it re-publishes, in records of their own (key ``+released/{arena}/{first id}``, never
tombstoned; Redis: the set ``{p}:{arena}:released``), so that a replay of the votes topic after a
wipe excludes the originals of the copies that count. See services/common/records.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from services.common.records import Place, RecordStore, RecordWriter, record_key
from services.common.redis_client import RedisClient
from shared.keys import KeyLayout

RELEASED_PREFIX = "+released/"  # not an arena slug: released ids, not a decision


def decision_key(arena: str, voter: str) -> str:
    """The record key of a voter's decision (arena slugs have no ``/``)."""
    return f"{arena}/{voter}"


def released_key(arena: str, first_vote_id: str) -> str:
    """The record key of a chunk of released vote ids (a retried release writes it again)."""
    return f"{RELEASED_PREFIX}{arena}/{first_vote_id}"


class QuarantineRecords:
    def __init__(self, client: RedisClient, keys: KeyLayout, records: RecordWriter | None,
                 topic: str) -> None:
        self._redis = client
        self._keys = keys
        self._records = records
        self._topic = topic
        self._store = RecordStore(client)

    @property
    def topic(self) -> str:
        """The quarantine topic (its marker in Redis says the decisions are back)."""
        return self._topic

    async def close(self) -> None:
        """Stop the writer's producer (when there is one)."""
        if self._records is not None:
            await self._records.stop()

    def place(self, arena: str, voter: str) -> Place:
        return Place(self._keys.flagged(arena), voter, self._keys.flag_offsets(arena), voter)

    async def record(self, arena: str, voter: str, evidence: bytes | str | None) -> int:
        """The decision (``None``: a release) to the topic alone; its offset (-1 without a
        writer). The worker writes Redis itself, in the MULTI of its screen."""
        if self._records is None:
            return -1
        value = evidence.encode() if isinstance(evidence, str) else evidence
        return await self._records.write(self._topic, decision_key(arena, voter), value)

    async def write(self, arena: str, voter: str, evidence: bytes | str | None) -> None:
        """The decision to the topic, then to Redis (only if newer)."""
        offset = await self.record(arena, voter, evidence)
        if offset < 0:
            if evidence is None:
                await self._redis.hdel(self._keys.flagged(arena), voter)
            else:
                await self._redis.hset(self._keys.flagged(arena), voter, evidence)
            return
        await self._store.put(self.place(arena, voter), offset, evidence)

    async def write_released(self, arena: str, vote_ids: Sequence[str]) -> None:
        """The ids of votes a release re-publishes: to the topic, then to Redis. Written before
        the copies: ids without copies (a release that failed half-way) belong to votes still
        quarantined, which a replay excludes anyway."""
        if not vote_ids:
            return
        if self._records is not None:
            await self._records.write(self._topic, released_key(arena, vote_ids[0]),
                                      orjson.dumps(list(vote_ids)))
        await self._redis.sadd(self._keys.released(arena), *vote_ids)

    async def apply_records(self, records: Sequence[Any]) -> None:
        """Replay: write consumer records of the quarantine topic (each only if newer; released
        ids into their set); the arenas of flags join the arenas set (the quarantine listing
        walks it)."""
        arenas = set()
        for rec in records:
            key = record_key(rec)
            if key.startswith(RELEASED_PREFIX):
                if rec.value:
                    arena = key[len(RELEASED_PREFIX):].partition("/")[0]
                    await self._redis.sadd(self._keys.released(arena), *orjson.loads(rec.value))
                continue
            arena, _, voter = key.partition("/")
            if not voter:
                continue
            await self._store.put(self.place(arena, voter), rec.offset, rec.value)
            if rec.value is not None:
                arenas.add(arena)
        if arenas:
            await self._redis.sadd(self._keys.arenas(), *sorted(arenas))
