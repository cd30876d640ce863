"""A batch's votes in steps of whole records (services/rating/processor.py)."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from services.rating.arena_slices import DeadLetter, RawRecord
from services.rating.processor import decoded_chunks

VOTE = {"vote_id": "v", "arena": "text", "model_a": "a", "model_b": "b", "winner": "tie"}


def record(offset: int, votes: int) -> RawRecord:
    return RawRecord("t", 0, offset, orjson.dumps([VOTE] * votes))


async def steps(
    recs: list[RawRecord], most: int, turn_votes: int = 5_000
) -> list[tuple[list[Any], list[DeadLetter]]]:
    return [step async for step in decoded_chunks(recs, most, turn_votes)]


async def test_steps_are_cut_between_records_only() -> None:
    recs = [record(0, 3), record(1, 4), record(2, 1), RawRecord("t", 0, 3, b"{"),
            record(4, 5)]
    chunks = await steps(recs, 5)
    assert [[r.offset for r, _ in votes] for votes, _ in chunks] == [
        [0, 0, 0, 1, 1, 1, 1], [2, 4, 4, 4, 4, 4]]
    assert [[d.record.offset for d in dead] for _, dead in chunks] == [[], [3]]
    assert [len(v) for v, _ in await steps(recs, 10**9)] == [13]
    assert [len(v) for v, _ in await steps(recs, 1)] == [3, 4, 1, 5]  # the dead joins 5


async def test_an_empty_batch_is_one_empty_step() -> None:
    assert await steps([], 5) == [([], [])]
    [(votes, dead)] = await steps([RawRecord("t", 0, 0, None)], 5)
    assert votes == [] and len(dead) == 1


async def test_the_loop_turns_while_a_step_is_decoded() -> None:
    """A step of many records is not decoded in one stretch: other tasks (the probes) run
    after every ``turn_votes`` or so votes decoded, before the step is handed on."""
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    before = ticks
    [(votes, _)] = await steps([record(i, 10) for i in range(20)], 10**9, turn_votes=50)
    task.cancel()
    assert len(votes) == 200 and ticks - before >= 4
