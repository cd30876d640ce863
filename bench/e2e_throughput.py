"""End-to-end votes/s: NDJSON batches posted to ingest until every vote is in the standings,
against a bare aiokafka producer + consumer moving the same messages through the same broker.

    .venv/bin/python bench/e2e_throughput.py [--votes 200000] [--batch 2000] [--concurrency 4]
"""

from __future__ import annotations

import argparse
import asyncio
import time

import httpx
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from harness import infra, stack

from services.demo.arena import SyntheticArena
from tests.support.infra import unique_prefix


async def podium_run(votes: list[bytes], batch: int, concurrency: int) -> float:
    async with infra() as running, stack(running) as st:
        bodies = [b"\n".join(votes[i:i + batch]) for i in range(0, len(votes), batch)]
        queue: asyncio.Queue[bytes] = asyncio.Queue()
        for body in bodies:
            queue.put_nowait(body)

        async def poster(client: httpx.AsyncClient) -> None:
            while not queue.empty():
                body = queue.get_nowait()
                r = await client.post("/v1/votes/batch", content=body,
                                      headers={"content-type": "application/x-ndjson"})
                assert r.status_code == 202, r.text[:300]

        started = time.perf_counter()
        async with httpx.AsyncClient(base_url=st.services["ingest"].url, timeout=120) as client:
            await asyncio.gather(*(poster(client) for _ in range(concurrency)))
        posted = time.perf_counter() - started
        async with httpx.AsyncClient(base_url=st.services["api"].url, timeout=10) as api:
            while True:
                r = await api.get("/v1/leaderboards/text/overall")
                if r.status_code == 200 and r.json()["votes"] == len(votes):
                    break
                await asyncio.sleep(0.02)
        total = time.perf_counter() - started
        print(f"  podium: all {len(votes):,} posted in {posted:.2f}s, in standings after "
              f"{total:.2f}s")
        return len(votes) / total


async def reference_run(votes: list[bytes]) -> float:
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
            started = time.perf_counter()
            acks = [await producer.send(topic, v, key=b"text") for v in votes]
            await asyncio.gather(*acks)
            seen = 0
            while seen < len(votes) + 1:
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
    args = parser.parse_args()
    arena = SyntheticArena(seed=3)
    votes = [orjson.dumps(v) for v in arena.votes(args.votes)]
    print(f"e2e throughput: {args.votes:,} votes, NDJSON batches of {args.batch}, "
          f"{args.concurrency} concurrent posters")
    reference = await reference_run(votes)
    podium = await podium_run(votes, args.batch, args.concurrency)
    print(f"reference (bare aiokafka produce+consume): {reference:,.0f} votes/s")
    print(f"podium end to end:                         {podium:,.0f} votes/s "
          f"= {podium / reference:.0%} of reference (targets: >= 50% and >= 20,000/s)")


if __name__ == "__main__":
    asyncio.run(main())
