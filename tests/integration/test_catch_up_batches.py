"""A catch-up's big batches (issue #17, recovery time): screened and applied in steps of
whole records, refitted once, with the same results as one step; the resume hears of a batch
only once its boards are written (services/rating/processor.py, resume.py)."""

from __future__ import annotations

import gc
import threading
from collections.abc import Sequence
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis

from services.api.standings import StandingsReader
from services.common.runtime import OFF_LOOP_VOTES
from services.demo.arena import SyntheticArena
from services.rating import counts_applier, voter_screen
from services.rating import processor as processor_module
from services.rating.arena_slices import ArenaSlice, RawRecord, fold
from services.rating.online_elo import online_elo
from services.rating.processor import Outputs, RatingProcessor, ResumeHooks, Tuning
from services.rating.screen_decision import decide
from services.rating.store import RatingStore
from services.rating.voter_screen import VoterScreen
from services.rating.voter_stats import ScreenOptions
from shared.keys import KeyLayout
from tests.support.counts import board_counts


class Collected:
    def __init__(self) -> None:
        self.values: list[bytes] = []

    async def __call__(self, values: Sequence[bytes]) -> None:
        self.values.extend(values)


def batch_records(arenas: Sequence[str], per_record: int, records: int) -> list[RawRecord]:
    """Records of ``per_record`` votes, one arena each (partition by arena, as ingest keys
    them), the arenas interleaved; a few voters, so the screen has statistics to keep."""
    sources = [SyntheticArena(arena=a, seed=i + 1,
                              strengths={f"m{k}": 1000 + 40 * k for k in range(8)})
               for i, a in enumerate(arenas)]
    out: list[RawRecord] = []
    offsets = [0] * len(arenas)
    for n in range(records):
        i = n % len(arenas)
        votes = [{**v, "vote_id": f"{arenas[i]}-{n}-{k}", "voter": f"u{k % 13}"}
                 for k, v in enumerate(sources[i].votes(per_record))]
        out.append(RawRecord("votes", i, offsets[i], orjson.dumps(votes)))
        offsets[i] += 1
    return out


def processor(client: aioredis.Redis, keys: KeyLayout, chunk_votes: int,
              hooks: ResumeHooks | None = None) -> RatingProcessor:
    return RatingProcessor(RatingStore(client, keys), Outputs(Collected(), Collected()),
                           Tuning(chunk_votes=chunk_votes),
                           screen=VoterScreen(client, keys, ScreenOptions()),
                           generations_of=keys, resume=hooks or ResumeHooks())


async def boards(client: aioredis.Redis, keys: KeyLayout) -> dict[str, Any]:
    reader = StandingsReader(client, keys)
    out: dict[str, Any] = {}
    for arena, view in await reader.board_names():
        doc = await reader.board_doc(arena, view)
        assert doc is not None
        out[f"{arena}/{view}"] = (
            doc["votes"], [(r["model"], r["votes"], r["wins"], r["losses"], r["ties"],
                            r["score"], r["elo"] if "elo" in r else None) for r in doc["rows"]],
            await board_counts(client, keys, arena, view))
    return out


async def test_a_batch_in_steps_gives_what_one_step_gives(
    redis_client: aioredis.Redis, prefix: str
) -> None:
    recs = batch_records(["text", "vision"], per_record=40, records=30)
    whole, steps = KeyLayout(f"{prefix}w"), KeyLayout(f"{prefix}s")
    for batch in (recs[:20], recs[20:]):
        await processor(redis_client, whole, chunk_votes=10**9).process(batch)
        await processor(redis_client, steps, chunk_votes=100).process(batch)  # 3 records a step
    expected = await boards(redis_client, whole)
    assert len(expected) > 2
    assert await boards(redis_client, steps) == expected
    for name, (votes, _, _) in expected.items():
        if name.endswith("/overall"):
            assert votes == 15 * 40  # each vote once
    stats = [await redis_client.hgetall(layout.voter_stats(arena))
             for layout in (whole, steps) for arena in ("text", "vision")]
    assert stats[:2] == stats[2:] and stats[0]  # the screen's statistics too


async def test_the_resume_hears_of_a_batch_once_its_boards_are_written(
    redis_client: aioredis.Redis, prefix: str
) -> None:
    """/readyz says caught up when the resume hears that the catch-up's last batch is applied
    (services/rating/resume.py): by then its boards are refitted and count it (before, the
    catch-up ended when its last record was admitted, before the apply and the refit)."""
    keys = KeyLayout(prefix)
    reader = StandingsReader(redis_client, keys)
    events: list[str] = []
    heard: list[int] = []

    def applied(records: Sequence[RawRecord]) -> None:
        events.append("applied")
        heard.append(len(records))

    p = processor(redis_client, keys, chunk_votes=50, hooks=ResumeHooks(applied=applied))
    real_refit = p.boards.refit

    async def refit(*args: Any) -> None:
        await real_refit(*args)
        events.append("refitted")

    p.boards.refit = refit  # type: ignore[method-assign]
    recs = batch_records(["text"], per_record=25, records=8)
    for batch, votes in ((recs[:5], 125), (recs[5:], 200)):
        await p.process(batch)
        assert events[-2:] == ["refitted", "applied"]
        doc = await reader.board_doc("text", "overall")
        assert doc is not None and doc["votes"] == votes
    assert heard == [5, 3]


async def test_the_collector_is_paused_while_the_steps_run_and_restored_after(
    redis_client: aioredis.Redis, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cyclic GC walked each step's live votes again and again (~14 % of a catch-up's CPU,
    bench/RESULTS.md): it is off while a batch's steps run, and back on once they are done."""
    seen: list[bool] = []

    def fold_seeing_gc(votes: Any, after: Any = None) -> list[ArenaSlice]:
        seen.append(gc.isenabled())
        return fold(votes, after)

    monkeypatch.setattr(processor_module, "fold", fold_seeing_gc)
    assert gc.isenabled()
    await processor(redis_client, KeyLayout(prefix), chunk_votes=100).process(
        batch_records(["text"], per_record=40, records=6))  # two steps of 3 records
    assert seen == [False, False] and gc.isenabled()


async def test_a_big_steps_pure_phases_leave_the_event_loop_free(
    redis_client: aioredis.Redis, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The screen decision, the fold and online Elo of a catch-up's step held the event loop
    for hundreds of ms each (``/readyz`` went unanswered for up to 2 s): from
    ``OFF_LOOP_VOTES`` votes they run in a thread; a live batch's stay on the loop."""
    on_loop: dict[str, list[bool]] = {"decide": [], "fold": [], "elo": []}
    loop_thread = threading.get_ident()

    def seen(name: str, work: Any) -> Any:
        def run(*args: Any) -> Any:
            on_loop[name].append(threading.get_ident() == loop_thread)
            return work(*args)
        return run

    monkeypatch.setattr(voter_screen, "decide", seen("decide", decide))
    monkeypatch.setattr(processor_module, "fold", seen("fold", fold))
    monkeypatch.setattr(counts_applier, "online_elo", seen("elo", online_elo))
    worker = processor(redis_client, KeyLayout(prefix), chunk_votes=10**9)
    per_record = 500
    # a catch-up's step (some votes are the screen's to quarantine: more than the bound)
    await worker.process(batch_records(["text"], per_record, 2 + OFF_LOOP_VOTES // per_record))
    assert on_loop == {"decide": [False], "fold": [False], "elo": [False]}
    for calls in on_loop.values():
        calls.clear()
    await worker.process(batch_records(["text"], 40, 2))  # a live batch: on the loop
    assert on_loop == {"decide": [True], "fold": [True], "elo": [True]}
