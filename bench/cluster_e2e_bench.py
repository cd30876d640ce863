"""End-to-end votes/s on the production topology against the single-node stack, in one run with
the same vote stream: NDJSON batches posted until every vote is on its arena's overall board.

    .venv/bin/python bench/cluster_e2e_bench.py [--votes 200000] [--warmup 40000] [--batch 2000]
        [--concurrency 4] [--arenas 4]

single   one broker, one Redis, one ingest, one rating worker, one api (bench/harness.py)
cluster  three KRaft brokers (topics with 3 copies, min.insync.replicas 2, acks=all), a Redis
         Cluster of 3 masters + 3 replicas (AOF everysec on each), two ingest replicas (the
         posters split between them), two rating workers in one group, one api; started by
         deploy/stack.sh up --cluster-infra on ports of its own (tests/support/cluster.py)

Votes of ``--arenas`` arenas, interleaved, so that their partitions spread over the workers.
Each run first moves ``--warmup`` other votes the same way (untimed). On this machine's 2 cores
the cluster is not expected to be faster: the figure is the cost of replication (issue #17).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import time
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import aiohttp
import orjson
from harness import ROOT, infra

from tests.support.cluster import Cluster
from tests.support.infra import Infra, service_env, unique_prefix
from tests.support.processes import ServiceProcess
from tests.support.votes import mixed_votes

ARENAS = ("text", "vision", "coding", "webdev", "search", "copilot")
NDJSON = {"content-type": "application/x-ndjson"}


@asynccontextmanager
async def services(running: Infra, labels: tuple[str, ...]) -> AsyncIterator[
        dict[str, ServiceProcess]]:
    """One process per label (``ingest-2`` is an ingest process), stopped afterwards."""
    prefix = unique_prefix()
    env = service_env(running, prefix, PODIUM_LOG_LEVEL="WARNING")
    started: dict[str, ServiceProcess] = {}
    try:
        for label in labels:
            process = ServiceProcess(label.split("-")[0], env, log_name=f"bench-{label}")
            started[label] = process
            await process.start()
        yield started
    finally:
        for process in started.values():
            process.stop()


@asynccontextmanager
async def single_node() -> AsyncIterator[dict[str, ServiceProcess]]:
    async with infra() as running, services(running, ("ingest-1", "rating-1", "api-1")) as ps:
        yield ps


@asynccontextmanager
async def cluster_topology() -> AsyncIterator[dict[str, ServiceProcess]]:
    run_dir = ROOT / ".run" / "bench" / f"cluster-{os.getpid()}"
    subprocess.run(["rm", "-rf", str(run_dir)], check=True)
    cluster = Cluster.on_free_ports(run_dir)
    try:
        await asyncio.to_thread(cluster.start)
        running = Infra(cluster.kafka_bootstrap, cluster.redis_url)
        labels = ("ingest-1", "ingest-2", "rating-1", "rating-2", "api-1")
        async with services(running, labels) as ps:
            yield ps
    finally:
        await asyncio.to_thread(cluster.stop)
        subprocess.run(["rm", "-rf", str(run_dir)], check=False)


async def overall_votes(api: aiohttp.ClientSession) -> int:
    """Votes on every arena's overall board (each vote counts once there)."""
    async with api.get("/v1/leaderboards") as r:
        body = await r.read()
    if r.status != 200:
        return -1
    return sum(b["votes"] for b in orjson.loads(body)["boards"] if b["view"] == "overall")


async def move(ps: dict[str, ServiceProcess], bodies: list[bytes], expected: int,
               concurrency: int) -> tuple[float, float]:
    """Post ``bodies`` (posters spread over the ingest replicas) and wait until the overall
    boards hold ``expected`` votes: (seconds to post, seconds until counted)."""
    ingests = [p.url for label, p in ps.items() if label.startswith("ingest")]
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)
    timeout = aiohttp.ClientTimeout(total=120)

    async def poster(url: str) -> None:
        async with aiohttp.ClientSession(url, timeout=timeout) as client:
            while not queue.empty():
                body = queue.get_nowait()
                async with client.post("/v1/votes/batch", data=body, headers=NDJSON) as r:
                    text = await r.read()
                    assert r.status == 202, text[:300]

    started = time.perf_counter()
    await asyncio.gather(*(poster(ingests[i % len(ingests)]) for i in range(concurrency)))
    posted = time.perf_counter() - started
    async with aiohttp.ClientSession(ps["api-1"].url) as api:
        while True:
            if await overall_votes(api) == expected:
                break
            await asyncio.sleep(0.02)
    return posted, time.perf_counter() - started


Topology = AbstractAsyncContextManager[dict[str, ServiceProcess]]


async def run(name: str, topology: Topology, warmup: list[bytes], timed: list[bytes],
              per_body: int, concurrency: int) -> float:
    async with topology as ps:
        t0 = time.perf_counter()
        await move(ps, warmup, len(warmup) * per_body, concurrency)
        print(f"  {name}: warm-up of {len(warmup) * per_body:,} votes in "
              f"{time.perf_counter() - t0:.1f}s")
        posted, total = await move(ps, timed, (len(warmup) + len(timed)) * per_body,
                                   concurrency)
        votes = len(timed) * per_body
        print(f"  {name}: {votes:,} posted in {posted:.2f}s, all counted after {total:.2f}s")
        return votes / total


def bodies(votes: list[bytes], batch: int) -> list[bytes]:
    return [b"\n".join(votes[i:i + batch]) for i in range(0, len(votes), batch)]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--votes", type=int, default=200_000)
    parser.add_argument("--warmup", type=int, default=40_000)
    parser.add_argument("--batch", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--arenas", type=int, default=4, choices=range(1, len(ARENAS) + 1))
    args = parser.parse_args()
    if args.votes % args.batch or args.warmup % args.batch:
        parser.error("--votes and --warmup must be multiples of --batch")
    arenas = ARENAS[:args.arenas]
    every = [orjson.dumps(v) for v in mixed_votes(args.warmup + args.votes, 5, arenas)]
    warmup = bodies(every[:args.warmup], args.batch)
    timed = bodies(every[args.warmup:], args.batch)
    print(f"cluster vs single node, end to end: {args.votes:,} votes of {len(arenas)} arenas "
          f"after {args.warmup:,} untimed, NDJSON batches of {args.batch}, "
          f"{args.concurrency} concurrent posters")
    single = await run("single", single_node(), warmup, timed, args.batch, args.concurrency)
    cluster = await run("cluster", cluster_topology(), warmup, timed, args.batch,
                        args.concurrency)
    print(f"single node (1 broker, 1 Redis, 1 ingest, 1 worker):          {single:,.0f} votes/s")
    print(f"cluster (3 brokers RF 3, Redis 3+3, 2 ingest, 2 workers):    {cluster:,.0f} votes/s"
          f" = {cluster / single:.0%} of single node")


if __name__ == "__main__":
    asyncio.run(main())
