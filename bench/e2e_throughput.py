"""End-to-end votes/s: NDJSON batches posted to ingest until every vote is in the standings,
against a bare aiokafka producer + consumer moving the same messages through the same broker.

    .venv/bin/python bench/e2e_throughput.py [--votes 200000] [--batch 2000] [--concurrency 4]
        [--warmup 40000]

Both runs start on a fresh broker; each first moves ``--warmup`` other messages the same way
(untimed) so that what is timed is the steady state, not the JVM's and the services' start.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time

import aiohttp
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from harness import cpu_seconds, infra, infra_pids, stack

from services.demo.arena import SyntheticArena
from tests.support.infra import unique_prefix


async def podium_run(votes: list[bytes], warmup: list[bytes], batch: int,
                     concurrency: int) -> float:
    async with infra() as running, stack(running) as st:
        queue: asyncio.Queue[bytes] = asyncio.Queue()

        # aiohttp and orjson: the load generator must not be what limits the run (httpx and
        # its JSON decoding of the polled board took ~4 us of the client's CPU per vote)
        async def poster(client: aiohttp.ClientSession) -> None:
            while not queue.empty():
                body = queue.get_nowait()
                async with client.post("/v1/votes/batch", data=body,
                                       headers={"content-type": "application/x-ndjson"}) as r:
                    text = await r.read()
                    assert r.status == 202, text[:300]

        async def in_standings(expected: int) -> None:
            async with aiohttp.ClientSession(st.services["api"].url) as api:
                while True:
                    async with api.get("/v1/leaderboards/text/overall") as r:
                        body = await r.read()
                    if r.status == 200 and orjson.loads(body)["votes"] == expected:
                        return
                    await asyncio.sleep(0.02)

        async def post_all(batch_votes: list[bytes]) -> None:
            for i in range(0, len(batch_votes), batch):
                queue.put_nowait(b"\n".join(batch_votes[i:i + batch]))
            async with aiohttp.ClientSession(st.services["ingest"].url,
                                             timeout=aiohttp.ClientTimeout(total=120)) as client:
                await asyncio.gather(*(poster(client) for _ in range(concurrency)))

        if warmup:
            await post_all(warmup)
            await in_standings(len(warmup))
        pids = {name: s.proc.pid for name, s in st.services.items()}
        pids.update(infra_pids(), client=os.getpid())
        cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        started = time.perf_counter()
        await post_all(votes)
        posted = time.perf_counter() - started
        await in_standings(len(warmup) + len(votes))
        total = time.perf_counter() - started
        per_vote = {name: (cpu_seconds(pid) - cpu_before[name]) / len(votes) * 1e6
                    for name, pid in pids.items()}
        print("  CPU per vote (us): " + ", ".join(f"{n} {us:.1f}" for n, us in per_vote.items())
              + f"; all {sum(per_vote.values()):.1f}")
        print(f"  podium: all {len(votes):,} posted in {posted:.2f}s, in standings after "
              f"{total:.2f}s")
        return len(votes) / total


async def reference_run(votes: list[bytes], warmup: list[bytes]) -> float:
    async with infra() as running:
        topic = unique_prefix() + ".ref"
        producer = AIOKafkaProducer(bootstrap_servers=running.kafka_bootstrap, acks="all",
                                    enable_idempotence=True, linger_ms=2,
                                    max_batch_size=256 * 1024)
        consumer = AIOKafkaConsumer(topic, bootstrap_servers=running.kafka_bootstrap,
                                    auto_offset_reset="earliest", group_id=topic)
        await producer.start()
        await producer.send_and_wait(topic, b"warm-up", key=b"text")
        await consumer.start()
        try:
            if warmup:
                acks = [await producer.send(topic, v, key=b"text") for v in warmup]
                await asyncio.gather(*acks)
            seen = 0
            while seen < len(warmup) + 1:
                batch = await consumer.getmany(timeout_ms=200, max_records=10_000)
                seen += sum(len(records) for records in batch.values())
            started = time.perf_counter()
            acks = [await producer.send(topic, v, key=b"text") for v in votes]
            await asyncio.gather(*acks)
            seen = 0
            while seen < len(votes):
                batch = await consumer.getmany(timeout_ms=200, max_records=10_000)
                seen += sum(len(records) for records in batch.values())
            elapsed = time.perf_counter() - started
        finally:
            await consumer.stop()
            await producer.stop()
        print(f"  reference: {len(votes):,} produced (acks=all) and consumed in {elapsed:.2f}s")
        return len(votes) / elapsed


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--votes", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=40_000,
                        help="votes moved first, untimed, in both runs (0 = none)")
    args = parser.parse_args()
    arena = SyntheticArena(seed=3)
    every = [orjson.dumps(v) for v in arena.votes(args.warmup + args.votes)]
    warmup, votes = every[:args.warmup], every[args.warmup:]
    print(f"e2e throughput: {args.votes:,} votes after {args.warmup:,} untimed, NDJSON batches "
          f"of {args.batch}, {args.concurrency} concurrent posters")
    reference = await reference_run(votes, warmup)
    podium = await podium_run(votes, warmup, args.batch, args.concurrency)
    print(f"reference (bare aiokafka produce+consume): {reference:,.0f} votes/s")
    print(f"podium end to end:                         {podium:,.0f} votes/s "
          f"= {podium / reference:.0%} of reference (targets: >= 50% and >= 20,000/s)")


if __name__ == "__main__":
    asyncio.run(main())
