"""HTTP benchmarks with wrk (keep-alive, 64 connections), each beside its reference measured in
the same run on the same server stack:

- single-vote POST /v1/votes on ingest  vs  a bare Starlette endpoint answering 202;
- GET /v1/leaderboards/text/overall of a 300-model board on api  vs  a bare Starlette endpoint
  returning the same bytes.

    .venv/bin/python bench/http_bench.py [--seconds 10] [--connections 64] [--only post|read]
        [--warmup-seconds 3] [--post-warmup-seconds 60]

Each server (podium's and the reference) first gets the same load, untimed: ``--warmup-seconds``
for the reads, ``--post-warmup-seconds`` for the POSTs. The POST warm-up is long because the
Kafka broker behind ingest is a JVM: it sees only a few hundred produce requests a second (one
per group of requests), so its JIT takes about a minute to compile the produce path. Over that
minute its CPU per POST falls from ~45 us to ~9 us and podium's req/s rises by ~20 % (the
warm-up prints each 10 s); a broker in service has long been warm.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import orjson
import redis.asyncio as aioredis
from harness import ROOT, Stack, cpu_seconds, infra, infra_pids, stack
from wrk import WrkResult, run_wrk

from services.demo.arena import SyntheticArena
from services.rating.arena_slices import RawRecord
from services.rating.processor import Outputs, RatingProcessor
from services.rating.store import RatingStore
from tests.support.infra import Infra, free_port
from tests.support.wait import wait_until


async def reference(kind: str, *extra: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(ROOT / "bench/reference_apps.py"), kind,
                             str(port), *extra])
    url = f"http://127.0.0.1:{port}"

    async def up() -> bool:
        async with httpx.AsyncClient() as c:
            await c.get(url + "/")
        return True

    await wait_until(up, 20, "reference app")
    return proc, url


def show(name: str, podium: WrkResult, ref: WrkResult, target: float) -> None:
    ratio = podium.requests_per_s / ref.requests_per_s
    print(f"{name}: podium {podium.requests_per_s:,.0f} req/s (p50 {podium.p50_ms:.1f} ms, "
          f"p99 {podium.p99_ms:.1f} ms, non-2xx {podium.non_2xx}); reference "
          f"{ref.requests_per_s:,.0f} req/s (p99 {ref.p99_ms:.1f} ms) -> {ratio:.0%} "
          f"(target >= {target:.0%})")


async def seed_board(redis_url: str, prefix: str, models: int, votes: int) -> None:
    """A real 300-model board, written by the rating processor itself."""
    strengths = {f"model-{i:03d}": 1000.0 + 2.0 * i for i in range(models)}
    arena = SyntheticArena(strengths=strengths, seed=5, categories=(), languages=(("en", 1),))
    client = aioredis.Redis.from_url(redis_url)

    async def ignore(values: object) -> None:
        return None

    from shared.keys import KeyLayout
    processor = RatingProcessor(RatingStore(client, KeyLayout(prefix)), Outputs(ignore, ignore))
    batch = 20_000
    for start in range(0, votes, batch):
        records = [RawRecord("seed", 0, start + i, orjson.dumps(v))
                   for i, v in enumerate(arena.votes(batch))]
        await processor.process(records)
    await client.aclose()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--only", choices=("post", "read"), help="Run one benchmark only.")
    parser.add_argument("--warmup-seconds", type=int, default=3,
                        help="untimed load on each server (podium and reference) before reads")
    parser.add_argument("--post-warmup-seconds", type=int, default=60,
                        help="untimed load on each server before POSTs (the broker's JIT)")
    args = parser.parse_args()
    # one load generator on one address: the per-IP limit (policy, 500 req/s by default) is
    # lifted so the figure is the server's, not the limiter's
    async with infra() as running, stack(running, names=("ingest", "api"),
                                         PODIUM_INGEST_IP_REQUESTS_PER_S="1000000") as st:
        if args.only != "read":
            await post_bench(st, args.seconds, args.connections, args.post_warmup_seconds)
        if args.only != "post":
            await read_bench(running, st, args.seconds, args.connections, args.warmup_seconds)


def warm_up(url: str, seconds: int, connections: int, script: Path | None = None) -> None:
    """Untimed load first: the broker's JIT and the servers' caches reach their steady state
    (the same for podium and its reference)."""
    if seconds > 0:
        run_wrk(url, seconds, connections, script=script)


def warm_up_showing(url: str, seconds: int, connections: int, script: Path,
                    pids: dict[str, int]) -> None:
    """``warm_up`` in 10 s steps, printing each step's req/s and CPU per request."""
    left = seconds
    while left > 0:
        step = min(10, left)
        before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        started = time.perf_counter()
        result = run_wrk(url, step, connections, script=script)
        requests = max(result.requests_per_s * (time.perf_counter() - started), 1.0)
        print(f"  warm-up {seconds - left + step:3d}/{seconds} s: "
              f"{result.requests_per_s:,.0f} req/s; CPU per request (us): "
              + ", ".join(f"{n} {(cpu_seconds(p) - before[n]) / requests * 1e6:.0f}"
                          for n, p in pids.items()), flush=True)
        left -= step


async def post_bench(st: Stack, seconds: int, connections: int, warmup_s: int) -> None:
    script = ROOT / "bench/post_vote.lua"
    ingest_url = st.services["ingest"].url + "/v1/votes"
    pids = {"ingest": st.services["ingest"].proc.pid, **infra_pids()}
    warm_up_showing(ingest_url, warmup_s, connections, script, pids)
    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    started = time.perf_counter()
    podium_post = run_wrk(ingest_url, seconds, connections, script=script)
    requests = podium_post.requests_per_s * (time.perf_counter() - started)
    per_request = {name: (cpu_seconds(pid) - before[name]) / requests * 1e6
                   for name, pid in pids.items()}
    proc, url = await reference("accept")
    try:
        warm_up(url + "/v1/votes", warmup_s, connections, script)
        ref_post = run_wrk(url + "/v1/votes", seconds, connections, script=script)
    finally:
        proc.terminate()
    show("single-vote POST", podium_post, ref_post, 0.5)
    print("  CPU per request (us): " + ", ".join(f"{n} {us:.0f}" for n, us in per_request.items()))


async def read_bench(
    running: Infra, st: Stack, seconds: int, connections: int, warmup_s: int
) -> None:
    await seed_board(running.redis_url, st.prefix, models=300, votes=200_000)
    board_url = st.services["api"].url + "/v1/leaderboards/text/overall"
    async with httpx.AsyncClient() as c:
        body = (await c.get(board_url)).content
    assert orjson.loads(body)["models"] == 300
    warm_up(board_url, warmup_s, connections)
    podium_read = run_wrk(board_url, seconds, connections)
    with tempfile.NamedTemporaryFile(suffix=".json") as f:
        Path(f.name).write_bytes(body)
        proc, url = await reference("bytes", f.name)
        try:
            warm_up(url + "/", warmup_s, connections)
            ref_read = run_wrk(url + "/", seconds, connections)
        finally:
            proc.terminate()
    show(f"leaderboard read, 300 models ({len(body):,} bytes)", podium_read, ref_read, 0.8)
    print(f"  leaderboard read p99 {podium_read.p99_ms:.1f} ms (target <= 20 ms)")


if __name__ == "__main__":
    asyncio.run(main())
