"""``python -m services.demo``: stream synthetic votes through the ingest API until Ctrl-C."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import time
from typing import Any

import httpx
import orjson

from services.demo.arena import DEMO_MODELS, SyntheticArena, demo_model_info

log = logging.getLogger("demo")


async def register_models(ingest: str, token: str | None) -> None:
    """Register the demo models (already registered ones are left as they are)."""
    if not token:
        log.warning("PODIUM_INGEST_ADMIN_TOKEN is unset: models are not registered (ingest "
                    "then needs PODIUM_INGEST_AUTO_REGISTER_MODELS=true)")
        return
    headers = {"authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=ingest, timeout=10, headers=headers) as client:
        for model_id in DEMO_MODELS:
            for _ in range(30):
                try:
                    r = await client.post("/v1/admin/models", json=demo_model_info(model_id))
                    break
                except httpx.HTTPError:
                    await asyncio.sleep(1)
            else:
                raise SystemExit(f"ingest at {ingest} is not reachable")
            if r.status_code not in (201, 409):
                log.warning("registering %s: %s %s", model_id, r.status_code, r.text[:200])


NEXT_BATTLE_MAX_N = 50  # the api's default PODIUM_API_NEXT_BATTLE_MAX_N


async def sampled_votes(api: httpx.AsyncClient, arena: SyntheticArena, n: int
                        ) -> list[dict[str, Any]]:
    """``n`` votes on pairs the api's next-battle served, each with its sampling token; plain
    votes for what it did not serve (no board yet, api unreachable)."""
    votes: list[dict[str, Any]] = []
    while len(votes) < n:
        want = min(NEXT_BATTLE_MAX_N, n - len(votes))
        try:
            r = await api.get(f"/v1/arenas/{arena.arena}/next-battle", params={"n": want})
        except httpx.HTTPError:
            break
        if r.status_code != 200:
            break
        for pair in r.json()["pairs"]:
            vote = arena.battle(pair["model_a"], pair["model_b"])
            if pair["sampling_token"]:
                vote["sampling_token"] = pair["sampling_token"]
            votes.append(vote)
    return votes + list(arena.votes(n - len(votes)))


async def stream_votes(ingest: str, rate: float, batch: int, total: int | None, seed: int,
                       api_url: str | None = None) -> int:
    """Post votes at ``rate`` per second; with ``api_url``, on the pairs its next-battle
    serves (each vote with its sampling token)."""
    arena = SyntheticArena(seed=seed)
    sent = 0
    started = time.monotonic()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    key = os.environ.get("PODIUM_DEV_API_KEY")
    if not key:
        log.warning("PODIUM_DEV_API_KEY is unset: ingest refuses the votes unless "
                    "PODIUM_INGEST_REQUIRE_AUTH=false")
    headers = {"X-API-Key": key} if key else {}
    async with httpx.AsyncClient(base_url=ingest, timeout=10, headers=headers) as client, \
            httpx.AsyncClient(base_url=api_url or ingest, timeout=10) as api:
        while (total is None or sent < total) and not stop.is_set():
            n = batch if total is None else min(batch, total - sent)
            votes = (await sampled_votes(api, arena, n) if api_url is not None
                     else list(arena.votes(n)))
            body = b"\n".join(orjson.dumps(v) for v in votes)
            try:
                r = await client.post(
                    "/v1/votes/batch",
                    content=body,
                    headers={"content-type": "application/x-ndjson"},
                )
            except httpx.HTTPError as exc:
                log.warning("ingest not reachable (%s); retrying", exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 1)
                continue
            if r.status_code == 202:
                sent += n
            else:
                log.warning("ingest answered %s: %s", r.status_code, r.text[:200])
                await asyncio.sleep(1)
            if sent and sent % (batch * 50) == 0:
                log.info("%d votes sent (%.0f/s)", sent, sent / (time.monotonic() - started))
            # pace to the requested rate
            ahead = sent / rate - (time.monotonic() - started)
            if ahead > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), ahead)
    return sent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ingest", default="http://127.0.0.1:8001")
    parser.add_argument("--rate", type=float, default=200.0, help="votes per second")
    parser.add_argument("--batch", type=int, default=50, help="votes per request")
    parser.add_argument("--total", type=int, default=None, help="stop after this many votes")
    parser.add_argument("--seed", type=int, default=int(time.time()))
    parser.add_argument("--api", default=None, help="ask this api's next-battle for every "
                        "battle and send its sampling tokens back with the votes")
    args = parser.parse_args()
    logging.basicConfig(level="INFO", format="%(asctime)s demo %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    asyncio.run(register_models(args.ingest, os.environ.get("PODIUM_INGEST_ADMIN_TOKEN")))
    sent = asyncio.run(stream_votes(args.ingest, args.rate, args.batch, args.total, args.seed,
                                    args.api))
    log.info("done: %d votes sent", sent)


if __name__ == "__main__":
    main()
