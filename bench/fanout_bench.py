"""Rank-change fan-out: N concurrent SSE streams on one api process (default 5,000), rank
changes published to the topic one round at a time; the time from publish to arrival at every
stream (p50/p99/max over all streams and rounds) and the api's RSS per stream.

The streams are read by this process over real sockets, on the same machine: the latency
includes this reader's own time to parse N sockets (pessimistic).

    .venv/bin/python bench/fanout_bench.py --streams 5000 --rounds 20
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import statistics
import time
from pathlib import Path

from aiokafka import AIOKafkaProducer
from harness import cpu_seconds, infra

from tests.support.infra import service_env, unique_prefix
from tests.support.processes import ServiceProcess
from tests.support.sse_swarm import SseSubscriber, rank_change
from tests.support.wait import wait_until


def raise_file_limit(wanted: int) -> int:
    """Raise the soft limit of open files towards ``wanted`` (the api process inherits it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


async def open_streams(port: int, n: int, tasks: list[asyncio.Task[None]]) -> list[SseSubscriber]:
    subs = [SseSubscriber("127.0.0.1", port) for _ in range(n)]

    async def connect(sub: SseSubscriber) -> None:
        reader, writer = await sub.open()
        if sub.status != 200:
            raise RuntimeError(f"stream refused: {sub.status}")
        tasks.append(asyncio.create_task(sub.run(reader, writer)))

    for i in range(0, n, 250):
        await asyncio.gather(*(connect(s) for s in subs[i:i + 250]))

    async def all_ready() -> bool:
        return all(s.ids("ready") for s in subs)

    await wait_until(all_ready, 120, "every stream's ready")
    return subs


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run(streams: int, rounds: int, verbose: bool) -> None:
    limit = raise_file_limit(2 * streams + 1_000)
    print(f"open-file limit {limit}")
    async with infra() as running:
        prefix = unique_prefix()
        env = service_env(running, prefix, PODIUM_LOG_LEVEL="WARNING",
                          PODIUM_API_STREAM_MAX_PER_ADDRESS=str(streams + 10))
        api = await ServiceProcess("api", env, log_name="bench-fanout-api").start()
        tasks: list[asyncio.Task[None]] = []
        producer = AIOKafkaProducer(bootstrap_servers=running.kafka_bootstrap, acks="all")
        await producer.start()
        try:
            assert api.proc is not None and api.port is not None
            await open_streams(api.port, 1, tasks)  # the feed is up: its ring is in the base
            base = rss_bytes(api.proc.pid)
            started = time.monotonic()
            subs = await open_streams(api.port, streams, tasks)
            opened = time.monotonic() - started
            per_stream = (rss_bytes(api.proc.pid) - base) / streams
            print(f"{streams} streams open in {opened:.1f} s; api RSS {base / 2**20:.0f} MiB "
                  f"before, {rss_bytes(api.proc.pid) / 2**20:.0f} MiB after: "
                  f"{per_stream / 1024:.1f} KiB per stream")
            latencies: list[float] = []
            topic = f"{prefix}.podium.rank-changes"
            for r in range(rounds):
                cpu = cpu_seconds(api.proc.pid)
                sent = time.monotonic()
                await producer.send_and_wait(topic, rank_change().model_dump_json().encode(),
                                             partition=0)

                async def delivered(want: int = r + 1) -> bool:
                    return all(len(s.change_times) >= want for s in subs)

                await wait_until(delivered, 60, f"round {r} everywhere", interval=0.2)
                this = [s.change_times[r] - sent for s in subs]
                latencies.extend(this)
                if verbose:
                    print(f"round {r}: first {1000 * min(this):.0f} ms, "
                          f"p50 {1000 * pct(this, 0.5):.0f} ms, last {1000 * max(this):.0f} ms, "
                          f"api CPU {1000 * (cpu_seconds(api.proc.pid) - cpu):.0f} ms")
            ms = [1000 * x for x in latencies]
            print(f"delivery to {streams} streams, {rounds} rounds: p50 {pct(ms, 0.5):.0f} ms, "
                  f"p99 {pct(ms, 0.99):.0f} ms, max {max(ms):.0f} ms, "
                  f"mean {statistics.fmean(ms):.0f} ms (target p99 <= 1000 ms)")
        finally:
            await producer.stop()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            api.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--streams", type=int, default=5_000)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--verbose", action="store_true", help="figures of each round")
    args = parser.parse_args()
    asyncio.run(run(args.streams, args.rounds, args.verbose))


if __name__ == "__main__":
    main()
