"""Latency of GET /v1/arenas/{arena}/next-battle at 300 models, next to the plain board read
(GET /v1/leaderboards/{arena}/overall), on real Kafka, Redis and the three services.

60,000 votes over 300 models go in; once the worker has written the board's samplers from a
fit of all 300, the two reads alternate over one keep-alive connection (client-side latency:
it includes httpx's own ~0.3-1 ms).

    .venv/bin/python bench/next_battle_bench.py [--requests 2000] [--n 1]
"""

from __future__ import annotations

import argparse
import asyncio
import time

import httpx
from harness import cpu_seconds, infra, stack

from services.common.redis_client import connect
from services.demo.arena import SyntheticArena
from shared.keys import KeyLayout
from shared.sampling_model import PairSampler

MODELS = 300
VOTES = 60_000


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def within(metrics: str, route: str, bound: str) -> float:
    """Share of the route's GETs the api answered within ``bound`` seconds (its latency
    histogram: time from the request to the answer, inside the server)."""
    counts = {}
    for line in metrics.splitlines():
        if (line.startswith("podium_api_http_request_seconds_bucket{")
                and f'route="{route}"' in line and 'method="GET"' in line):
            le = line.split('le="')[1].split('"')[0]
            counts[le] = float(line.rsplit(" ", 1)[1])
    return counts[bound] / counts["+Inf"] if counts.get("+Inf") else float("nan")


async def sampler_of_all_models(redis_url: str, prefix: str) -> None:
    client = connect(redis_url)
    key = KeyLayout(prefix).sampling("text", "overall", "active")
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline:
            raw = await client.get(key)
            if raw is not None and len(PairSampler.decode(raw).models) == MODELS:
                return
            await asyncio.sleep(0.2)
        raise TimeoutError("no sampler of all 300 models within 300 s")
    finally:
        await client.aclose()


async def main(requests: int, n: int) -> None:
    strengths = {f"model-{k:03d}": 1500.0 - 550.0 * (k / (MODELS - 1)) ** 0.75
                 for k in range(MODELS)}
    arena = SyntheticArena(strengths=strengths, seed=3, categories=(),
                           languages=(("en", 1.0),))
    async with infra() as running, stack(running, PODIUM_SAMPLING_SECRET="bench-secret",
                                         PODIUM_INGEST_VOTER_BURST="100000",
                                         PODIUM_INGEST_VOTER_VOTES_PER_S="100000",
                                         PODIUM_RATING_SAMPLING_INTERVAL_S="2") as s:
        async with httpx.AsyncClient(base_url=s.services["ingest"].url, timeout=60) as ingest:
            votes = list(arena.votes(VOTES))
            for start in range(0, VOTES, 5000):
                r = await ingest.post("/v1/votes/batch", json=votes[start:start + 5000])
                assert r.status_code == 202, r.text
        await sampler_of_all_models(running.redis_url, s.prefix)
        timings: dict[str, list[float]] = {"next-battle": [], "board read": []}
        cpu: dict[str, float] = {"next-battle": 0.0, "board read": 0.0}
        paths = {"next-battle": f"/v1/arenas/text/next-battle?n={n}",
                 "board read": "/v1/leaderboards/text/overall"}
        api_proc = s.services["api"].proc
        assert api_proc is not None
        async with httpx.AsyncClient(base_url=s.services["api"].url, timeout=10) as api:
            for path in paths.values():  # warm: caches filled, connection open
                assert (await api.get(path)).status_code == 200
            for _ in range(requests // 100):  # blocks of 100 of each, interleaved
                for name, path in paths.items():
                    before = cpu_seconds(api_proc.pid)
                    for _ in range(100):
                        started = time.perf_counter()
                        r = await api.get(path)
                        timings[name].append((time.perf_counter() - started) * 1000)
                        assert r.status_code == 200, r.text
                    cpu[name] += cpu_seconds(api_proc.pid) - before
            metrics = (await api.get("/metrics")).text
        for name, ms in timings.items():
            print(f"{name:12s} n={len(ms)} p50 {pct(ms, 0.5):.2f} ms  p90 {pct(ms, 0.9):.2f} ms"
                  f"  p99 {pct(ms, 0.99):.2f} ms  max {max(ms):.2f} ms;  api CPU "
                  f"{cpu[name] / len(ms) * 1000:.2f} ms/request")
        for route in ("/v1/arenas/{arena}/next-battle", "/v1/leaderboards/{arena}/{view}"):
            print(f"server side, {route}: {within(metrics, route, '0.005'):.2%} answered within "
                  f"5 ms, {within(metrics, route, '0.0025'):.2%} within 2.5 ms")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--n", type=int, default=1, help="pairs per next-battle request")
    args = parser.parse_args()
    asyncio.run(main(args.requests, args.n))
