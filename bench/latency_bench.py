"""Freshness and rank-change delivery, on real Kafka and Redis with the three services:

- freshness: a steady 1,000 votes/s (a batch of 20 every 20 ms); for each batch, the time from
  its 202 to the first read of GET /v1/leaderboards/text/overall that counts it (reads every
  10 ms, through the same path users hit, micro-cache included);
- rank-change delivery: two models on board flip/overall; each round posts just enough wins to
  flip them; the time from the 202 to the rank-change event on an SSE subscription.

    .venv/bin/python bench/latency_bench.py [--seconds 30] [--flips 40]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import statistics
import time

import httpx
import orjson
from harness import infra, stack

from services.demo.arena import SyntheticArena

NDJSON = {"content-type": "application/x-ndjson"}


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summary(name: str, ms: list[float], target: str) -> None:
    print(f"{name}: n={len(ms)} p50 {pct(ms, 0.5):.0f} ms, p90 {pct(ms, 0.9):.0f} ms, "
          f"p99 {pct(ms, 0.99):.0f} ms, max {max(ms):.0f} ms, mean "
          f"{statistics.mean(ms):.0f} ms ({target})")


async def freshness(ingest_url: str, api_url: str, seconds: float) -> list[float]:
    arena = SyntheticArena(seed=9)
    acked: list[tuple[float, int]] = []  # (time of 202, votes acknowledged so far)
    seen: list[tuple[float, int]] = []   # (time of read, votes on the board)
    done = asyncio.Event()

    async def poster() -> None:
        total = 0
        async with httpx.AsyncClient(base_url=ingest_url, timeout=10) as client:
            start = time.monotonic()
            for i in itertools.count():
                if time.monotonic() - start > seconds:
                    break
                body = b"\n".join(orjson.dumps(v) for v in arena.votes(20))
                r = await client.post("/v1/votes/batch", content=body, headers=NDJSON)
                assert r.status_code == 202, r.text
                total += 20
                acked.append((time.monotonic(), total))
                ahead = start + (i + 1) * 0.02 - time.monotonic()
                if ahead > 0:
                    await asyncio.sleep(ahead)
        done.set()

    async def reader() -> None:
        async with httpx.AsyncClient(base_url=api_url, timeout=10) as client:
            while not done.is_set() or (acked and (not seen or seen[-1][1] < acked[-1][1])):
                r = await client.get("/v1/leaderboards/text/overall")
                if r.status_code == 200:
                    seen.append((time.monotonic(), orjson.loads(r.content)["votes"]))
                await asyncio.sleep(0.01)

    await asyncio.gather(poster(), reader())
    out = []
    j = 0
    for t_ack, count in acked:
        while j < len(seen) and (seen[j][1] < count or seen[j][0] < t_ack):
            j += 1
        if j == len(seen):
            break
        out.append(1000 * (seen[j][0] - t_ack))
    return out


async def delivery(ingest_url: str, api_url: str, flips: int) -> list[float]:
    ids = itertools.count()
    wins = {"flip-a": 0, "flip-b": 0}
    events: asyncio.Queue[float] = asyncio.Queue()

    async def subscribe(ready: asyncio.Event) -> None:
        async with httpx.AsyncClient(base_url=api_url, timeout=None) as client:
            async with client.stream("GET", "/v1/events/rank-changes",
                                     params={"board": "flip/overall"}) as response:
                event = ""
                async for line in response.aiter_lines():
                    if line.startswith("event:"):
                        event = line.split(":", 1)[1].strip()
                        if event == "ready":
                            ready.set()
                    elif line == "" and event == "rank-change":
                        events.put_nowait(time.monotonic())
                        event = ""

    def battle(winner: str, loser: str, n: int) -> bytes:
        return b"\n".join(orjson.dumps({
            "vote_id": f"flip-{next(ids)}", "arena": "flip", "model_a": winner,
            "model_b": loser, "winner": "model_a", "voter": f"v{i}"}) for i in range(n))

    ready = asyncio.Event()
    sub = asyncio.create_task(subscribe(ready))
    await asyncio.wait_for(ready.wait(), 30)
    latencies = []
    async with httpx.AsyncClient(base_url=ingest_url, timeout=10) as client:
        leader = "flip-b"
        for _ in range(flips + 1):
            winner, loser = ("flip-a", "flip-b") if leader == "flip-b" else ("flip-b", "flip-a")
            n = wins[loser] - wins[winner] + 3
            r = await client.post("/v1/votes/batch", content=battle(winner, loser, n),
                                  headers=NDJSON)
            assert r.status_code == 202, r.text
            t_ack = time.monotonic()
            wins[winner] += n
            leader = winner
            t_event = await asyncio.wait_for(events.get(), 30)
            await asyncio.sleep(0.3)  # let the pair of events (both models) arrive
            while not events.empty():
                events.get_nowait()
            latencies.append(1000 * (t_event - t_ack))
    sub.cancel()
    return latencies[1:]  # the first round creates the board (new models), not a flip


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--flips", type=int, default=40)
    args = parser.parse_args()
    async with infra() as running, stack(running) as st:
        ingest, api = st.services["ingest"].url, st.services["api"].url
        fresh = await freshness(ingest, api, args.seconds)
        summary("freshness at 1,000 votes/s (202 -> visible in GET board)", fresh,
                "target p99 <= 300 ms")
        sse = await delivery(ingest, api, args.flips)
        summary("rank-change delivery (202 -> SSE event)", sse, "target p99 <= 500 ms")


if __name__ == "__main__":
    asyncio.run(main())
