"""Board releases in Redis and their system of record, the releases topic (compacted; key the
release id, value the Release JSON; never a tombstone: a release is immutable). Ingest writes
them (``publish``), the api reads them, ingest's Replayer brings them back into a Redis that lost
them (``apply_records``). See services/common/records.py and shared/releases.py.

Redis holds each release twice: the whole document (``{p}:{releases}:docs``) and its summary
in its board's index (``{p}:{releases}:index:{board}``, what listings and time travel read),
each with its record's offset; ``{p}:{releases}:boards`` lists the boards that have releases.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError

from services.common.records import Place, RecordStore, RecordWriter, record_key
from services.common.redis_client import RedisClient
from shared.keys import KeyLayout, text
from shared.releases import Release, ReleaseSummary

log = logging.getLogger(__name__)

RECORD_MAX_BYTES = 1_000_000  # below the producer's max_request_size and the broker's default
INDEX_OFFSET = "#index:"  # ``#index:{id}`` -> offset of the summary's record (ids start alnum)
CLAIM_S = 60  # a publish of one id holds its claim at most this long


class ReleaseTooLarge(Exception):
    """The release does not fit in one record of the releases topic."""


class ReleaseRecords:
    def __init__(self, client: RedisClient, keys: KeyLayout,
                 records: RecordWriter | None = None, topic: str = "") -> None:
        self._redis = client
        self._keys = keys
        self._records = records
        self._topic = topic
        self._store = RecordStore(client)

    def _doc_place(self, release_id: str) -> Place:
        return Place(self._keys.release_docs(), release_id, self._keys.release_offsets(),
                     release_id)

    def _index_place(self, board: str, release_id: str) -> Place:
        return Place(self._keys.release_index(board), release_id,
                     self._keys.release_offsets(), INDEX_OFFSET + release_id)

    async def exists(self, release_id: str) -> bool:
        return bool(await self._redis.hexists(self._keys.release_docs(), release_id))

    async def publish(self, release: Release) -> bool:
        """Write ``release`` to the topic, then to Redis; False (nothing written) when a release
        of its id exists or is being published. Raises RecordUnavailable when Kafka does not
        acknowledge (nothing written; the id is free again), ReleaseTooLarge when it does not
        fit in one record (``RECORD_MAX_BYTES``)."""
        if self._records is None:
            raise RuntimeError("publishing needs a record writer")
        value = release.to_json()
        if len(value) > RECORD_MAX_BYTES:
            raise ReleaseTooLarge(f"the release is {len(value)} bytes, above the "
                                  f"{RECORD_MAX_BYTES} one record of the releases topic holds")
        claim = self._keys.release_claim(release.id)
        if not await self._redis.set(claim, "1", nx=True, ex=CLAIM_S):
            return False
        try:
            if await self.exists(release.id):
                return False
            offset = await self._records.write(self._topic, release.id, value)
            await self._put(release.id, offset, value, release.summary())
            return True
        finally:
            await self._redis.delete(claim)

    async def _put(self, release_id: str, offset: int, value: bytes,
                   summary: ReleaseSummary) -> None:
        """The document, then its summary (a listing never names a release it cannot serve)."""
        await self._store.put(self._doc_place(release_id), offset, value)
        await self._redis.sadd(self._keys.release_boards(), summary.board)
        await self._store.put(self._index_place(summary.board, release_id), offset,
                              summary.model_dump_json())

    async def get(self, release_id: str) -> Release | None:
        raw = await self._redis.hget(self._keys.release_docs(), release_id)
        return None if raw is None else Release.model_validate_json(raw)

    async def summaries(self, board: str | None = None) -> list[ReleaseSummary]:
        """The summaries of ``board``'s releases (of every board's when None), in no
        particular order."""
        if board is None:
            boards = sorted(text(b) for b in await self._redis.smembers(
                self._keys.release_boards()))
        else:
            boards = [board]
        found: list[ReleaseSummary] = []
        for name in boards:
            raw = await self._redis.hgetall(self._keys.release_index(name))
            found += [ReleaseSummary.model_validate_json(v) for v in raw.values()]
        return found

    async def apply_records(self, records: Sequence[Any]) -> None:
        """Replay: write consumer records of the releases topic (each only if newer)."""
        for rec in records:
            if rec.value is None:
                continue
            release_id = record_key(rec)
            try:
                release = Release.model_validate_json(rec.value)
            except ValidationError:
                log.error("release record %s at offset %d is not a release; skipped",
                          text(release_id), rec.offset)
                continue
            await self._put(release_id, rec.offset, rec.value, release.summary())
