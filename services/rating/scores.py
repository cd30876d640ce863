"""Benchmark boards: score events in, ``bench/{benchmark}`` standings out (latest score per
model, ranked by score, higher is better), with rank changes and history like any board."""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from importlib.resources import files
from typing import Any

import numpy as np
import orjson
from pydantic import ValidationError

from services.common.redis_client import REDIS_RETRYABLE, RedisClient
from services.rating.arena_slices import RawRecord
from services.rating.engine import rank_upper_bound
from services.rating.processor import Publish
from services.rating.read_models import ReadModelWriter
from services.rating.standings import rank_changes
from shared.events import BENCH_ARENA, ScoreEvent, SourcePosition, utc_now
from shared.generations import active_layout
from shared.keys import KeyLayout, board_name, text

log = logging.getLogger(__name__)

APPLY_SCORES_SCRIPT = files("services.rating").joinpath("apply_scores.lua").read_text()


def score_rows(latest: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Standings rows of a benchmark from ``{model: score event}``: best score first, equal
    scores by model id; ``rank_ub`` counts strictly better models, the CI is the score itself."""
    models = sorted(latest)
    scores = np.array([float(latest[m]["score"]) for m in models], dtype=np.float64)
    order = np.lexsort((np.arange(len(models)), -scores))
    rank_ub = rank_upper_bound(scores, scores)
    rows = []
    for position, i in enumerate(order, start=1):
        event = latest[models[i]]
        rows.append({
            "model": models[i], "rank": position, "rank_ub": int(rank_ub[i]),
            "score": float(scores[i]), "ci_low": float(scores[i]), "ci_high": float(scores[i]),
            "votes": 1, "wins": 0, "losses": 0, "ties": 0, "preliminary": False,
            "source": event.get("source"), "timestamp": event.get("timestamp"),
        })
    return rows


def bench_document(benchmark: str, rows: list[dict[str, Any]], now: datetime,
                   position: SourcePosition) -> dict[str, Any]:
    return {
        "board": board_name(BENCH_ARENA, benchmark), "arena": BENCH_ARENA, "view": benchmark,
        "updated_at": now.isoformat(), "models": len(rows), "votes": len(rows),
        "converged": True, "connected": True, "position": position.model_dump(), "rows": rows,
    }


class ScoreProcessor:
    """Applies score batches (fenced by offset), re-ranks touched benchmarks, publishes changes.

    With ``generations_of`` (the base key layout), each batch goes to the live generation of
    that key space (services/rating/rebuild.py); otherwise to ``keys``. One batch at a time:
    the agent's batches and a replay of the topic (``replay_scores``) may run side by side."""

    def __init__(
        self,
        client: RedisClient,
        keys: KeyLayout,
        publish_rank_changes: Publish,
        read_models: ReadModelWriter | None = None,
        clock: Callable[[], datetime] = utc_now,
        generations_of: KeyLayout | None = None,
    ) -> None:
        self._redis = client
        self._keys = keys
        self._base = generations_of
        self._lock = asyncio.Lock()
        self._publish_changes = publish_rank_changes
        self._read_models = read_models
        self._clock = clock
        self._apply = client.register_script(APPLY_SCORES_SCRIPT)
        self._rows: dict[str, list[dict[str, Any]]] = {}

    async def process(self, records: Sequence[RawRecord]) -> None:
        delay = 0.5
        while True:  # Redis down: wait and retry; the per-record fence makes retries harmless
            try:
                async with self._lock:
                    if self._base is not None:
                        self._keys = await active_layout(self._redis, self._base)
                    await self._process(records)
                return
            except REDIS_RETRYABLE as exc:
                log.warning("redis unavailable (%s); retrying score batch in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _process(self, records: Sequence[RawRecord]) -> None:
        by_partition: dict[tuple[str, int], list[tuple[RawRecord, ScoreEvent]]] = defaultdict(list)
        for rec in records:
            try:
                event = ScoreEvent.model_validate_json(rec.value or b"", strict=False)
            except ValidationError as exc:
                log.warning("skipping invalid score event at %s/%d@%d: %s",
                            rec.topic, rec.partition, rec.offset, exc.errors()[0]["msg"])
                continue
            by_partition[(rec.topic, rec.partition)].append((rec, event))
        await self._redis.sadd(self._keys.arenas(), BENCH_ARENA)
        for (topic, partition), items in by_partition.items():
            items.sort(key=lambda item: item[0].offset)
            applied = await self._apply_items(topic, partition, items)
            position = SourcePosition(topic=topic, partition=partition,
                                      offset=items[-1][0].offset)
            for benchmark in sorted({e.benchmark for _, e in items}):
                if applied or board_name(BENCH_ARENA, benchmark) not in self._rows:
                    await self._rerank(benchmark, position)

    async def _apply_items(
        self, topic: str, partition: int, items: list[tuple[RawRecord, ScoreEvent]]
    ) -> int:
        benchmarks = sorted({e.benchmark for _, e in items})
        index = {b: i for i, b in enumerate(benchmarks, start=1)}
        keys = [self._keys.fence(BENCH_ARENA), self._keys.views(BENCH_ARENA),
                *(self._keys.scores(BENCH_ARENA, b) for b in benchmarks)]
        argv: list[str | int | bytes] = [f"{topic}/{partition}", len(benchmarks), *benchmarks]
        for rec, event in items:
            argv.extend((index[event.benchmark], event.model, rec.offset,
                         event.model_dump_json()))
        return int(await self._apply(keys=keys, args=argv))

    async def _rerank(self, benchmark: str, position: SourcePosition) -> None:
        board = board_name(BENCH_ARENA, benchmark)
        raw = await self._redis.hgetall(self._keys.scores(BENCH_ARENA, benchmark))
        latest = {text(k): orjson.loads(v) for k, v in raw.items()}
        now = self._clock()
        rows = score_rows(latest)
        old_rows = self._rows.get(board)
        if old_rows is None:
            stored = await self._redis.get(self._keys.standings(BENCH_ARENA, benchmark))
            old_rows = orjson.loads(stored)["rows"] if stored else []
        doc = bench_document(benchmark, rows, now, position)
        await self._redis.set(self._keys.standings(BENCH_ARENA, benchmark), orjson.dumps(doc))
        await self._redis.publish(self._keys.board_changes(), board)  # the api's cache
        self._rows[board] = rows
        changes = rank_changes(board, old_rows, rows, now, position)
        if self._read_models is not None:
            await self._read_models.record_history(BENCH_ARENA, benchmark, rows, changes, now)
        if changes:
            await self._publish_changes([c.model_dump_json().encode() for c in changes])


async def restored_marker(client: RedisClient, base: KeyLayout, topic: str) -> str:
    """The marker of the scores topic in the live generation: a generation without it (Redis
    wiped, or a rebuild just switched to it) gets the topic replayed into it."""
    return (await active_layout(client, base)).restored(topic)


def raw_records(records: Sequence[Any]) -> list[RawRecord]:
    return [RawRecord(r.topic, r.partition, r.offset, r.value) for r in records]
