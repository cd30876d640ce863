"""Recovery time (issue #17): Redis wiped with N votes in Kafka -> every board's standings
identical again, by the rating worker alone (it notices the lost fences and replays the votes
topic: services/rating/resume.py).

    .venv/bin/python bench/recovery_bench.py [--votes 10000000] [--arenas text vision webdev]
        [--workers 1]

Steps: Kafka, Redis and ``--workers`` rating workers in one consumer group (deploy/, ports
of their own); N synthetic votes of a few arenas (``SyntheticArena``: 5 categories and 6
languages, so 12 boards an arena) produced straight to the votes topic as ingest produces them
(records of ``--record-votes`` votes of one arena, keyed by arena, ``received_at`` stamped); wait
until the workers have applied them all (their fences in Redis at the end of every partition);
snapshot every board (per model: votes, wins, losses, ties, score); FLUSHALL; time until every
board is back with the same counts and scores within 1e-9, and when the workers' /readyz went
503 (catching up) and back to 200 (every worker).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import aiohttp
import orjson
import redis.asyncio as aioredis
from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import murmur2
from harness import cpu_seconds, infra, infra_pids, stack

from services.api.standings import StandingsReader
from services.demo.arena import SyntheticArena
from services.rating.resume import resume_offsets
from services.rating.store import RatingStore
from shared.generations import active_layout
from shared.kafka import ensure_topics
from shared.keys import KeyLayout
from shared.topics import Topics

SCORE_TOL = 1e-9
PARTITIONS = 4  # votes_partitions' default


def partition_of(arena: str) -> int:
    """The votes partition of an arena's records: the producer's default partitioner
    (murmur2 of the key, the arena), as ingest's."""
    return (murmur2(arena.encode()) & 0x7FFFFFFF) % PARTITIONS
Board = dict[str, tuple[int, int, int, int, float]]  # model -> votes, wins, losses, ties, score


def records(arenas: list[str], votes: int, per_record: int,
            pool: int) -> Iterator[tuple[str, bytes, int]]:
    """(arena, record value, votes in it), the arenas interleaved a record at a time, as ingest
    writes them (a JSON array of one arena's votes, ``received_at`` stamped). Each arena draws
    ``pool`` battles from its ``SyntheticArena`` and cycles through them, each vote with a
    vote_id and a voter of its own (drawing 10M battles would cost ~16 us of CPU a vote)."""
    sources = [SyntheticArena(arena=a, seed=i + 1) for i, a in enumerate(arenas)]
    shares = [votes // len(arenas) + (i < votes % len(arenas)) for i in range(len(arenas))]
    battles = [list(s.votes(min(pool, share))) for s, share in zip(sources, shares, strict=True)]
    left = list(shares)
    serial = 0
    voters = random.Random(0)  # a voter drawn afresh for each vote, not tied to its battle
    while any(left):
        for i, arena in enumerate(arenas):
            n = min(per_record, left[i])
            if n == 0:
                continue
            drawn = battles[i]
            stamp = datetime.now(UTC).isoformat()
            batch: list[dict[str, Any]] = []
            for k in range(shares[i] - left[i], shares[i] - left[i] + n):
                serial += 1
                batch.append({**drawn[k % len(drawn)], "vote_id": f"rb-{serial:011d}",
                              "voter": f"voter-{voters.randrange(5000)}",
                              "received_at": stamp})
            left[i] -= n
            yield arena, orjson.dumps(batch), n


async def produce(bootstrap: str, topic: str, arenas: list[str], votes: int,
                  per_record: int, pool: int) -> dict[int, int]:
    """Produce the votes (acks=all, idempotent, as ingest); returns each partition's end
    offset."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True,
                                linger_ms=5, max_batch_size=1024 * 1024,
                                max_request_size=4 * 1024 * 1024)
    await producer.start()
    ends: dict[int, int] = {}
    sent, started, last = 0, time.perf_counter(), time.perf_counter()
    pending: list[asyncio.Future[Any]] = []
    try:
        for arena, value, n in records(arenas, votes, per_record, pool):
            pending.append(await producer.send(topic, value, key=arena.encode()))
            sent += n
            if len(pending) >= 200:
                for meta in await asyncio.gather(*pending):
                    ends[meta.partition] = max(ends.get(meta.partition, 0), meta.offset + 1)
                pending = []
            now = time.perf_counter()
            if now - last >= 10:
                last = now
                print(f"  produced {sent:,} / {votes:,} votes ({sent / (now - started):,.0f}/s)",
                      flush=True)
        for meta in await asyncio.gather(*pending):
            ends[meta.partition] = max(ends.get(meta.partition, 0), meta.offset + 1)
    finally:
        await producer.stop()
    elapsed = time.perf_counter() - started
    print(f"  produced {votes:,} votes in {sum(ends.values()):,} records in {elapsed:.1f} s "
          f"({votes / elapsed:,.0f} votes/s)", flush=True)
    return ends


async def snapshot(reader: StandingsReader) -> dict[str, Board]:
    boards: dict[str, Board] = {}
    for arena, view in await reader.board_names():
        doc = await reader.board_doc(arena, view)
        if doc is None:
            continue
        boards[f"{arena}/{view}"] = {
            r["model"]: (r["votes"], r["wins"], r["losses"], r["ties"], r["score"])
            for r in doc["rows"]}
    return boards


def differences(expected: dict[str, Board], now: dict[str, Board]) -> tuple[int, float]:
    """(boards not matching yet, largest score difference over the boards whose counts
    match)."""
    off, worst = 0, 0.0
    for name, board in expected.items():
        got = now.get(name)
        if got is None or got.keys() != board.keys():
            off += 1
            continue
        counts_equal = all(got[m][:4] == board[m][:4] for m in board)
        diff = max((abs(got[m][4] - board[m][4]) for m in board), default=0.0)
        if not counts_equal or diff > SCORE_TOL:
            off += 1
        if counts_equal:
            worst = max(worst, diff)
    return off, worst


async def standings_current(client: aioredis.Redis, keys: KeyLayout) -> bool:
    """Every board's standings document counts what its packed counts hold (the worker writes
    the counts and fences first, the refitted standings after)."""
    reader = StandingsReader(client, keys)
    live = await active_layout(client, keys)
    store = RatingStore(client, live)
    views: dict[str, list[str]] = {}
    for arena, view in await reader.board_names():
        views.setdefault(arena, []).append(view)
    for arena, arena_views in views.items():
        held = await store.load(arena, arena_views)
        for view in arena_views:
            doc = await reader.board_doc(arena, view)
            if doc is None or int(doc["votes"]) != held.counts[view].total:
                return False
    return bool(views)


async def wait_applied(client: aioredis.Redis, keys: KeyLayout, topic: str,
                       ends: dict[int, int], votes: int, timeout: float, since: float) -> None:
    """Wait until the worker's fences are at the end of every partition and the standings
    count what the counts hold (``since``: when the first record was produced)."""
    reader = StandingsReader(client, keys)
    started = last = time.perf_counter()
    while True:
        positions = await resume_offsets(client, keys, topic, ends)
        if (all(positions.offsets.get(p, 0) >= end for p, end in ends.items())
                and await standings_current(client, keys)):
            return
        now = time.perf_counter()
        if now - started > timeout:
            raise TimeoutError(f"not applied after {timeout:.0f} s: {positions.offsets} of {ends}")
        if now - last >= 10:
            last = now
            counted = 0
            for arena, view in await reader.board_names():
                if view == "overall":
                    doc = await reader.board_doc(arena, view)
                    counted += 0 if doc is None else int(doc["votes"])
            print(f"  applied {counted:,} / {votes:,} votes ({counted / (now - since):,.0f}/s "
                  f"since the first record)", flush=True)
        await asyncio.sleep(0.5)


async def readyz(http: aiohttp.ClientSession) -> tuple[int | None, float]:
    """The worker's /readyz status (None: no answer within the session's timeout; its
    endpoint shares the event loop with the batches) and how long the answer took."""
    started = time.perf_counter()
    try:
        async with http.get("/readyz") as r:
            await r.read()
            return r.status, time.perf_counter() - started
    except (TimeoutError, aiohttp.ClientError):
        return None, time.perf_counter() - started


async def metric(http: aiohttp.ClientSession, name: str) -> float | None:
    try:
        async with http.get("/metrics") as r:
            body = await r.text()
    except (TimeoutError, aiohttp.ClientError):
        return None
    for line in body.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return None


WORKER_SUMS = ("podium_rating_votes_total", "podium_rating_apply_seconds_sum",
               "podium_rating_refit_seconds_sum", "podium_rating_boards_refitted_total")


async def worker_sums(http: aiohttp.ClientSession) -> dict[str, float]:
    return {name: await metric(http, name) or 0.0 for name in WORKER_SUMS}  # 0: no answer


class Workers:
    """The rating workers' endpoints, polled together: /readyz is 200 when every worker says
    so, 503 when one says 503, None when one did not answer; the metrics' sums add up."""

    def __init__(self, sessions: list[aiohttp.ClientSession]) -> None:
        self.sessions = sessions

    async def readyz(self) -> tuple[int | None, float]:
        answers = await asyncio.gather(*(readyz(http) for http in self.sessions))
        statuses = [status for status, _ in answers]
        waited = max(w for _, w in answers)
        if None in statuses:
            return None, waited
        return (503 if 503 in statuses else statuses[0]), waited

    async def sums(self) -> dict[str, float]:
        each = await asyncio.gather(*(worker_sums(http) for http in self.sessions))
        return {name: sum(s[name] for s in each) for name in WORKER_SUMS}

    async def metric(self, name: str) -> float | None:
        values = [await metric(http, name) for http in self.sessions]
        return None if None in values else sum(v for v in values if v is not None)


async def recover(client: aioredis.Redis, keys: KeyLayout, worker_urls: list[str],
                  worker_pids: list[int], expected: dict[str, Board], votes: int,
                  timeout: float) -> dict[str, float]:
    """FLUSHALL, then poll the boards and every worker's /readyz until every board matches
    ``expected``."""
    reader = StandingsReader(client, keys)
    times: dict[str, float] = {}
    pids = {**{f"worker{i}": pid for i, pid in enumerate(worker_pids)}, **infra_pids(),
            "bench": os.getpid()}
    cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    timeout_2s = aiohttp.ClientTimeout(total=2)
    sessions = [aiohttp.ClientSession(url, timeout=timeout_2s) for url in worker_urls]
    try:
        return await _recover(client, reader, Workers(sessions), times, pids, cpu_before,
                              expected, timeout)
    finally:
        for http in sessions:
            await http.close()


async def _recover(client: aioredis.Redis, reader: StandingsReader, http: Workers,
                   times: dict[str, float], pids: dict[str, int], cpu_before: dict[str, float],
                   expected: dict[str, Board], timeout: float) -> dict[str, float]:
    sums_before = await http.sums()
    await client.flushall()
    started = last = time.perf_counter()
    while True:
        now = time.perf_counter() - started
        status, waited = await http.readyz()
        times["readyz_slowest"] = max(times.get("readyz_slowest", 0.0), waited)
        if status == 503 and "readyz_503" not in times:
            times["readyz_503"] = now
        if status == 200 and "readyz_503" in times and "readyz_200" not in times:
            times["readyz_200"] = now
        off, worst = differences(expected, await snapshot(reader))
        if off == 0:
            times["identical"] = time.perf_counter() - started
            times["worst_score_diff"] = worst
            times.update({f"cpu_{name}": cpu_seconds(pid) - cpu_before[name]
                          for name, pid in pids.items()})
            sums_after = await http.sums()
            times.update({k: sums_after[k] - sums_before[k] for k in WORKER_SUMS})
            break
        if now > timeout:
            raise TimeoutError(f"{off} of {len(expected)} boards still differ after "
                               f"{timeout:.0f} s")
        if time.perf_counter() - last >= 10:
            last = time.perf_counter()
            remaining = await http.metric("podium_rating_catch_up_remaining")
            print(f"  {now:6.1f} s after FLUSHALL: {off} of {len(expected)} boards differ; "
                  f"/readyz {status}; catch-up remaining {remaining} records", flush=True)
        await asyncio.sleep(0.1)
    deadline = time.perf_counter() + 60
    while "readyz_200" not in times and time.perf_counter() < deadline:
        # identical before /readyz was polled back to 200: the worker says ready once the
        # catch-up's last batch is applied and its boards refitted (and its rank changes
        # published), a moment after its boards are written
        if (await http.readyz())[0] == 200:
            times["readyz_200"] = time.perf_counter() - started
        else:
            await asyncio.sleep(0.05)
    return times


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--votes", type=int, default=10_000_000)
    parser.add_argument("--arenas", nargs="+", default=["text", "vision", "webdev"])
    parser.add_argument("--record-votes", type=int, default=500,
                        help="votes per Kafka record (ingest_votes_per_record's default)")
    parser.add_argument("--pool", type=int, default=200_000,
                        help="distinct battles drawn per arena, cycled through (each vote has "
                        "its own vote_id)")
    parser.add_argument("--workers", type=int, default=1,
                        help="rating workers in the consumer group (an arena's votes are one "
                        "partition's: more workers help as the arenas spread over partitions)")
    parser.add_argument("--timeout", type=float, default=3600,
                        help="longest wait for the apply and for the recovery, each (s)")
    args = parser.parse_args()
    print(f"recovery: {args.votes:,} votes of {len(args.arenas)} arenas "
          f"({', '.join(f'{a} on partition {partition_of(a)}' for a in args.arenas)}) in Kafka, "
          f"{args.workers} rating worker(s), Redis wiped", flush=True)
    async with infra() as running, stack(running, ("rating",) * args.workers) as st:
        keys = KeyLayout(st.prefix)
        topic = Topics(st.prefix + ".").votes
        await ensure_topics(running.kafka_bootstrap, {topic: PARTITIONS})
        produced_at = time.perf_counter()
        ends = await produce(running.kafka_bootstrap, topic, args.arenas, args.votes,
                             args.record_votes, args.pool)
        client = aioredis.Redis.from_url(running.redis_url)
        try:
            await wait_applied(client, keys, topic, ends, args.votes, args.timeout, produced_at)
            applied_s = time.perf_counter() - produced_at
            expected = await snapshot(StandingsReader(client, keys))
            # each vote counts for both of its models
            overall = sum(sum(r[0] for r in b.values()) // 2
                          for name, b in expected.items() if name.endswith("/overall"))
            print(f"  all applied {applied_s:.1f} s after the first record was produced; "
                  f"{len(expected)} boards, {overall:,} votes on the overall boards", flush=True)
            if overall != args.votes:
                print(f"  note: {args.votes - overall:,} votes not counted (quarantined voters)")
            workers = [s for key, s in st.services.items() if key.startswith("rating")]
            pids = [w.proc.pid for w in workers if w.proc is not None]
            times = await recover(client, keys, [w.url for w in workers], pids, expected,
                                  args.votes, args.timeout)
        finally:
            await client.aclose()
    took = times["identical"]
    at_10m = took * 10_000_000 / args.votes
    print(f"recovery: {args.votes:,} votes, {len(expected)} boards: identical again "
          f"{took:.1f} s after FLUSHALL = {args.votes / took:,.0f} votes/s replayed; 10M "
          + ("" if args.votes == 10_000_000 else "at this rate (extrapolated): ")
          + f"{at_10m:.0f} s = {at_10m / 300:.0%} of the target (<= 300 s)")
    print(f"  worker during the recovery: {times['podium_rating_votes_total']:,.0f} votes "
          f"processed, apply {times['podium_rating_apply_seconds_sum']:.1f} s, refit "
          f"{times['podium_rating_refit_seconds_sum']:.1f} s "
          f"({times['podium_rating_boards_refitted_total']:,.0f} board refits)")
    print(f"  /readyz 503 from {times.get('readyz_503', float('nan')):.1f} s to "
          f"{times.get('readyz_200', float('nan')):.1f} s (slowest answer "
          f"{times['readyz_slowest']:.1f} s); largest score difference "
          f"{times['worst_score_diff']:.1e} (tolerance {SCORE_TOL:.0e})")
    names = [f"worker{i}" for i in range(args.workers)] + ["redis", "kafka", "bench"]
    print("  CPU during the recovery (s, us per vote): " + ", ".join(
        f"{name} {times[f'cpu_{name}']:.1f} ({times[f'cpu_{name}'] / args.votes * 1e6:.1f})"
        for name in names))


if __name__ == "__main__":
    asyncio.run(main())
