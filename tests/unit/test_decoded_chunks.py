"""A batch's votes in steps of whole records (services/rating/processor.py)."""

from __future__ import annotations

import orjson

from services.rating.arena_slices import RawRecord
from services.rating.processor import decoded_chunks

VOTE = {"vote_id": "v", "arena": "text", "model_a": "a", "model_b": "b", "winner": "tie"}


def record(offset: int, votes: int) -> RawRecord:
    return RawRecord("t", 0, offset, orjson.dumps([VOTE] * votes))


def test_steps_are_cut_between_records_only() -> None:
    recs = [record(0, 3), record(1, 4), record(2, 1), RawRecord("t", 0, 3, b"{"),
            record(4, 5)]
    chunks = list(decoded_chunks(recs, 5))
    assert [[r.offset for r, _ in votes] for votes, _ in chunks] == [
        [0, 0, 0, 1, 1, 1, 1], [2, 4, 4, 4, 4, 4]]
    assert [[d.record.offset for d in dead] for _, dead in chunks] == [[], [3]]
    assert [len(v) for v, _ in decoded_chunks(recs, 10**9)] == [13]
    assert [len(v) for v, _ in decoded_chunks(recs, 1)] == [3, 4, 1, 5]  # the dead joins 5


def test_an_empty_batch_is_one_empty_step() -> None:
    assert list(decoded_chunks([], 5)) == [([], [])]
    [(votes, dead)] = decoded_chunks([RawRecord("t", 0, 0, None)], 5)
    assert votes == [] and len(dead) == 1
