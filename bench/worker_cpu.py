"""The rating worker's CPU per vote, in process: ``RatingProcessor.process`` wired as the worker
wires it (screen, read models and the timer that writes what refits left owed, generations) on
synthetic batch records against a Redis of its own. Kafka and faust are left out; Redis runs in
its own process, so the process CPU time measured here is the worker's own.

    .venv/bin/python bench/worker_cpu.py [--votes 200000] [--records-per-batch 4]
        [--votes-per-record 500] [--profile out.prof]

``--records-per-batch 4`` of 500 votes is what one 2,000-vote NDJSON post of
bench/e2e_throughput.py becomes; the worker sees batches of one to a few posts.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # as the worker (services/rating/__main__.py)
from pathlib import Path

import orjson
import redis.asyncio as aioredis
from harness import ROOT

from services.common.redis_client import connect as redis_connect
from services.common.runtime import tune_gc_for_batches
from services.demo.arena import SyntheticArena
from services.rating.arena_slices import RawRecord
from services.rating.processor import Outputs, RatingProcessor
from services.rating.read_models import ReadModelWriter
from services.rating.store import RatingStore
from services.rating.timers import flush_read_models
from services.rating.voter_screen import VoterScreen
from services.rating.voter_stats import ScreenOptions
from shared.events import utc_now
from shared.keys import KeyLayout
from tests.support.infra import free_port, redis_server, unique_prefix


async def ignore(values: object) -> None:
    return None


async def redis_cpu(client: aioredis.Redis) -> float:
    """CPU seconds the Redis server has used (all clients: meaningful on a Redis of its own)."""
    info = await client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def batches(votes: int, per_record: int, per_batch: int, seed: int) -> list[list[RawRecord]]:
    """Records as ingest writes them: every vote stamped with the time ingest received it."""
    arena = SyntheticArena(seed=seed)
    received_at = utc_now().isoformat()
    records: list[RawRecord] = []
    for offset, start in enumerate(range(0, votes, per_record)):
        chunk = [{**v, "received_at": received_at}
                 for v in arena.votes(min(per_record, votes - start))]
        records.append(RawRecord("bench.votes", 0, offset, orjson.dumps(chunk)))
    return [records[i:i + per_batch] for i in range(0, len(records), per_batch)]


async def run(redis_url: str, args: argparse.Namespace) -> None:
    client = redis_connect(redis_url)  # as the worker: commands packed by hiredis
    keys = KeyLayout(unique_prefix())
    processor = RatingProcessor(
        RatingStore(client, keys),
        Outputs(ignore, ignore, ReadModelWriter(client, keys, 300.0, 5000, time.monotonic)),
        screen=VoterScreen(client, keys, ScreenOptions()),
        generations_of=keys,
    )
    tune_gc_for_batches()  # as the worker (services/rating/__main__.py)
    warm = batches(args.warmup, args.votes_per_record, args.records_per_batch, seed=1)
    work = batches(args.votes, args.votes_per_record, args.records_per_batch, seed=2)
    for batch in warm:  # boards exist and fits are warm before the clock starts
        await processor.process([RawRecord("bench.warm", 0, r.offset, r.value) for r in batch])
    flusher = asyncio.ensure_future(flush_read_models(processor, 1.0))  # as the worker
    profiler = cProfile.Profile() if args.profile else None
    redis0 = await redis_cpu(client)
    wall0, cpu0 = time.perf_counter(), time.process_time()
    if profiler:
        profiler.enable()
    for batch in work:
        await processor.process(batch)
    if profiler:
        profiler.disable()
        profiler.dump_stats(args.profile)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    flusher.cancel()
    await asyncio.gather(flusher, return_exceptions=True)
    redis = await redis_cpu(client) - redis0
    n = args.votes
    print(f"worker cpu: {n:,} votes in {len(work)} batches of {args.records_per_batch} x "
          f"{args.votes_per_record}: cpu {cpu:.2f}s = {1e6 * cpu / n:.1f} us/vote, "
          f"redis cpu {1e6 * redis / n:.1f} us/vote, wall {wall:.2f}s = {n / wall:,.0f} votes/s")
    await client.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--votes", type=int, default=200_000)
    parser.add_argument("--warmup", type=int, default=20_000)
    parser.add_argument("--votes-per-record", type=int, default=500)
    parser.add_argument("--records-per-batch", type=int, default=4)
    parser.add_argument("--profile", type=str, default="")
    parser.add_argument("--redis-url", type=str, default="",
                        help="use this Redis instead of starting one")
    args = parser.parse_args()
    if args.redis_url:
        asyncio.run(run(args.redis_url, args))
        return
    port = free_port()
    with redis_server(Path(ROOT / ".run" / "worker-cpu"), port):
        asyncio.run(run(f"redis://127.0.0.1:{port}/0", args))


if __name__ == "__main__":
    main()
