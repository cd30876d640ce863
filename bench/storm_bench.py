"""Storms against the real services (issue #16): N requests at once, each on its own connection,
against ingest (the mix of tests/support/storm.py: unauthenticated, keyless and valid writes,
probes) and against the api (every Redis-backed read and the fast path). Prints the answers by
status class per N: the highest N with no 5xx at all, and the highest with no 5xx but 503 +
Retry-After (load shed), are the figures of bench/RESULTS.md.

    .venv/bin/python bench/storm_bench.py [--sizes 1000 2000 5000] [--pool 100]

Starts its own Kafka and Redis (bench/harness.py) and the three services on free ports, with
client keys required. ``ulimit -n`` must exceed the largest size (raised to the hard limit here,
and the services inherit it).
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import time
from collections import Counter
from collections.abc import Sequence

import httpx
from harness import infra, stack

from tests.support.infra import DEV_API_KEY
from tests.support.storm import Outcome, api_storm, fire, ingest_storm, polling_ready
from tests.support.votes import post_all


def classes(outcomes: Sequence[Outcome]) -> Counter[str]:
    out: Counter[str] = Counter()
    for o in outcomes:
        if o.status == 0:
            out["no answer"] += 1
        elif o.status == 503 and o.retry_after is not None:
            out["503+RA"] += 1
        elif o.status >= 500:
            out[str(o.status)] += 1
        elif o.status == 429:
            out["429"] += 1
        else:
            out[f"{o.status // 100}xx"] += 1
    return out


def line(service: str, size: int, outcomes: Sequence[Outcome], seconds: float,
         ready: Sequence[int]) -> str:
    c = classes(outcomes)
    other_5xx = sum(n for k, n in c.items() if k.isdigit() and int(k) >= 500)
    verdict = ("no 5xx" if not c["503+RA"] and not other_5xx and not c["no answer"]
               else "shed only (503+RA)" if not other_5xx and not c["no answer"] else "FAILS")
    return (f"{service:6} N={size:5}  {seconds:5.1f} s  {dict(sorted(c.items()))}  "
            f"/readyz {dict(Counter(ready))}  -> {verdict}")


async def main(sizes: list[int], pool: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    print(f"ulimit -n: {soft} -> {hard}; redis pool {pool} connections per service")
    async with infra() as running, stack(running, PODIUM_INGEST_REQUIRE_AUTH="true",
                                         PODIUM_REDIS_MAX_CONNECTIONS=str(pool)) as st:
        ingest, api = st.services["ingest"].url, st.services["api"].url
        seeded = [v for s in ingest_storm(ingest, DEV_API_KEY, 300, seed=1) for v in s.votes]
        async with httpx.AsyncClient(base_url=ingest, timeout=30,
                                     headers={"x-api-key": DEV_API_KEY}) as http:
            await post_all(http, seeded)
        models = sorted({m for v in seeded for m in (v["model_a"], v["model_b"])})
        for size in sizes:
            for service, base, shots in (
                ("ingest", ingest, ingest_storm(ingest, DEV_API_KEY, size, seed=size)),
                ("api", api, api_storm(api, models, size)),
            ):
                async with polling_ready(f"{base}/readyz") as ready:
                    started = time.perf_counter()
                    outcomes = await fire(shots)
                    seconds = time.perf_counter() - started
                print(line(service, size, outcomes, seconds, ready), flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 2000, 5000])
    parser.add_argument("--pool", type=int, default=100)
    args = parser.parse_args()
    asyncio.run(main(args.sizes, args.pool))
