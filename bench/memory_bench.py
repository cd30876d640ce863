"""Memory: Redis after 10 million votes over 300 models and 30 boards, and the rating worker's
RSS over a soak at 1,000 votes/s.

The Redis figure applies the counts of 10M votes through the real fenced Lua apply (aggregated
per board: the counts of a board do not depend on how its votes were batched): every vote counts
on `overall`, on 1.25 of 14 category boards on average, and on one of 15 language boards. It
prints used_memory above the empty server's, per board, and the time to load every board back.

    .venv/bin/python bench/memory_bench.py [--votes 10000000] [--soak-s 600]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections import Counter
from pathlib import Path

import httpx
import numpy as np
import orjson
import redis.asyncio as aioredis
from harness import infra, stack

from services.demo.arena import SyntheticArena
from services.rating.arena_slices import ArenaSlice
from services.rating.store import RatingStore
from shared.keys import KeyLayout, count_field

OUTCOMES = ("model_a", "model_b", "tie", "tie_bothbad")


def board_counts(rng: np.random.Generator, models: list[str], votes: int) -> Counter[str]:
    m = len(models)
    a = rng.integers(0, m, votes)
    b = (a + rng.integers(1, m, votes)) % m
    o = rng.choice(4, votes, p=[0.42, 0.43, 0.11, 0.04])
    keys, n = np.unique(np.stack([a, b, o]), axis=1, return_counts=True)
    out: Counter[str] = Counter()
    for (i, j, k), c in zip(keys.T.tolist(), n.tolist(), strict=True):
        out[count_field(models[i], models[j], OUTCOMES[k])] += c
    return out


async def redis_memory(redis_url: str, votes: int) -> None:
    client = aioredis.Redis.from_url(redis_url)
    keys = KeyLayout("mem")
    store = RatingStore(client, keys)
    base = int((await client.info("memory"))["used_memory"])
    rng = np.random.default_rng(1)
    models = [f"org{i % 40}/model-{i:03d}-instruct" for i in range(300)]
    boards = {"overall": votes}
    boards.update({f"category{i}": int(votes * 1.25 / 14) for i in range(14)})
    boards.update({f"lang:l{i}": votes // 15 for i in range(15)})
    version, offset = 0, 0
    started = time.perf_counter()
    for view, n in boards.items():
        counts = board_counts(rng, models, n)
        items = list(counts.items())
        for start in range(0, len(items), 20_000):
            sl = ArenaSlice("text", "mem", 0, offset, offset,
                            {view: Counter(dict(items[start:start + 20_000]))})
            version = (await store.apply(sl, version)).version
            offset += 1
    used = int((await client.info("memory"))["used_memory"]) - base
    cells = sum([await client.strlen(keys.counts("text", v)) for v in boards])
    models = await client.hlen(keys.model_index("text"))
    started_load = time.perf_counter()
    snapshot = await store.load("text", boards)
    load_s = time.perf_counter() - started_load
    assert sum(c.total for c in snapshot.counts.values()) == sum(boards.values())
    print(f"redis: {votes:,} votes over {models} models and {len(boards)} boards -> "
          f"{used / 2**20:.1f} MiB used_memory ({used / len(boards) / 2**10:.0f} KiB per board; "
          f"packed cells {cells / 2**20:.1f} MiB; applied in "
          f"{time.perf_counter() - started:.0f} s; all boards loaded in {load_s:.2f} s) "
          f"(target <= 300 MB)")
    await client.aclose()


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


async def soak(seconds: float) -> None:
    async with infra() as running, stack(running) as st:
        proc = st.services["rating"].proc
        assert proc is not None
        pid = proc.pid
        arena = SyntheticArena(seed=4)
        samples: list[tuple[float, int]] = []
        async with httpx.AsyncClient(base_url=st.services["ingest"].url, timeout=10) as c:
            start = time.monotonic()
            i = 0
            while time.monotonic() - start < seconds:
                body = b"\n".join(orjson.dumps(v) for v in arena.votes(100))
                r = await c.post("/v1/votes/batch", content=body,
                                 headers={"content-type": "application/x-ndjson"})
                assert r.status_code == 202, r.text
                i += 1
                if i % 10 == 0:
                    samples.append((time.monotonic() - start, rss_bytes(pid)))
                ahead = start + i * 0.1 - time.monotonic()
                if ahead > 0:
                    await asyncio.sleep(ahead)
        warm = [rss for t, rss in samples if t >= min(20.0, seconds / 4)]
        first, last = warm[0], warm[-1]
        print(f"rating worker RSS over a {seconds:.0f} s soak at 1,000 votes/s: "
              f"{first / 2**20:.0f} MiB after warm-up -> {last / 2**20:.0f} MiB at the end "
              f"({(last - first) / first:+.1%}; max {max(warm) / 2**20:.0f} MiB) "
              f"(target growth <= 10%)")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--votes", type=int, default=10_000_000)
    parser.add_argument("--soak-s", type=float, default=600)
    args = parser.parse_args()
    async with infra() as running:
        await redis_memory(running.redis_url, args.votes)
    await soak(args.soak_s)


if __name__ == "__main__":
    asyncio.run(main())
