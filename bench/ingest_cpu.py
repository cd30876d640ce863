"""Ingest's own CPU per single-vote POST, in process: the ASGI app ``python -m services.ingest``
serves (the fast path in front of FastAPI), with its real Redis and Kafka clients against a
real Redis and Kafka, on uvloop, driven by ``--connections`` concurrent callers that each post
one vote at a time, as wrk does in bench/http_bench.py, but without HTTP: no sockets, no
uvicorn, so what is measured is what ingest does itself (parsing and validating the vote, the
group's Redis call, the Kafka send and ack, the dedupe write, the answer and the metrics).

The callers' own cost (building a scope, collecting the answer) is measured the same way
against a bare ASGI app answering 202, and subtracted.

    .venv/bin/python bench/ingest_cpu.py [--seconds 8] [--connections 64] [--profile out.prof]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import itertools
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

import uvloop
from harness import infra

from services.common.runtime import tune_gc_for_batches
from tests.support.infra import service_env, unique_prefix

MODELS = ("atlas-7b", "boreal-13b", "cirrus-34b", "dynamo-70b")
App = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


def scope_for(body: bytes, api_key: str) -> dict[str, Any]:
    headers = [(b"host", b"127.0.0.1"), (b"content-type", b"application/json"),
               (b"content-length", str(len(body)).encode())]
    if api_key:
        headers.append((b"x-api-key", api_key.encode()))
    return {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
            "method": "POST", "scheme": "http", "path": "/v1/votes", "raw_path": b"/v1/votes",
            "query_string": b"", "root_path": "", "headers": headers,
            "client": ("127.0.0.1", 40000), "server": ("127.0.0.1", 8000)}


async def drive(app: App, seconds: float, connections: int, api_key: str, tag: str
                ) -> tuple[int, float, float, dict[int, int]]:
    """(requests, wall s, CPU s, statuses) of ``connections`` callers posting for ``seconds``."""
    counter = itertools.count()
    statuses: dict[int, int] = {}
    deadline = time.perf_counter() + seconds

    async def caller(n: int) -> int:
        done = 0
        while time.perf_counter() < deadline:
            i = next(counter)
            body = (f'{{"vote_id":"{tag}-{n}-{i}","arena":"text","model_a":"{MODELS[i % 4]}",'
                    f'"model_b":"{MODELS[(i + 1) % 4]}","winner":"model_a"}}').encode()
            messages = [{"type": "http.request", "body": body, "more_body": False}]

            async def receive(messages: list[dict[str, Any]] = messages) -> dict[str, Any]:
                if messages:
                    return messages.pop()
                await asyncio.Event().wait()  # the client stays connected
                return {"type": "http.disconnect"}

            async def send(message: dict[str, Any]) -> None:
                if message["type"] == "http.response.start":
                    statuses[message["status"]] = statuses.get(message["status"], 0) + 1

            await app(scope_for(body, api_key), receive, send)
            done += 1
        return done

    cpu, wall = time.process_time(), time.perf_counter()
    requests = sum(await asyncio.gather(*(caller(n) for n in range(connections))))
    return requests, time.perf_counter() - wall, time.process_time() - cpu, statuses


async def bare(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await receive()
    await send({"type": "http.response.start", "status": 202,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": b'{"accepted":["x"],"duplicates":[]}'})


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--warmup-seconds", type=float, default=3)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--profile", help="write a cProfile of the timed run to this file")
    args = parser.parse_args()
    async with infra() as running:
        os.environ.update(service_env(running, unique_prefix(),
                                      PODIUM_INGEST_IP_REQUESTS_PER_S="1000000",
                                      PODIUM_LOG_LEVEL="WARNING"))
        from services.ingest.app import create_app
        from shared.settings import IngestSettings

        settings = IngestSettings()
        app = create_app(settings)  # as deployed: behind the single-vote fast path
        key = os.environ["PODIUM_DEV_API_KEY"]
        async with app.router.lifespan_context(app):
            tune_gc_for_batches()  # as services/ingest/__main__.py
            while not app.state.publisher.ready:  # noqa: ASYNC110 (no event to wait on)
                await asyncio.sleep(0.05)
            await drive(app, args.warmup_seconds, args.connections, key, "warm")
            profiler = cProfile.Profile() if args.profile else None
            if profiler:
                profiler.enable()
            n, wall, cpu, statuses = await drive(app, args.seconds, args.connections, key, "run")
            if profiler:
                profiler.disable()
                profiler.dump_stats(args.profile)
        base_n, _, base_cpu, _ = await drive(bare, 2, args.connections, key, "bare")
    callers_us = base_cpu / base_n * 1e6
    print(f"ingest in process: {n / wall:,.0f} req/s over {wall:.1f} s, {args.connections} "
          f"callers, statuses {statuses}")
    print(f"  CPU per request {cpu / n * 1e6:.1f} us, of which the callers' own "
          f"{callers_us:.1f} us -> ingest {cpu / n * 1e6 - callers_us:.1f} us")


if __name__ == "__main__":
    uvloop.run(main())  # the loop the services run on (services/common/runtime.py)
