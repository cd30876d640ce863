"""Releases and time travel (issue #19 item 3), the three services as processes on real Kafka
and Redis: two releases of a board with votes in between, the board ``?at=`` each (by id and
by time), their diff and export, immutability (a second publish of an id is 409), bad input
(404/422 with a message, never 5xx), and a Redis that lost its releases gets them back from
the releases topic."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from tests.support.infra import ADMIN_TOKEN, ROOT, Infra, service_env
from tests.support.processes import ServiceProcess, running_stack
from tests.support.wait import wait_until

pytestmark = [pytest.mark.timeout(240)]

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
BOARD = "/v1/leaderboards/text/overall"


@pytest.fixture
async def stack(infra: Infra, prefix: str) -> AsyncIterator[dict[str, ServiceProcess]]:
    env = service_env(infra, prefix, PODIUM_RECORDS_CHECK_S="0.5",
                      PODIUM_RATING_BATCH_WITHIN_S="0.02")
    async with running_stack(env, prefix) as services:
        yield services


def votes(n: int, models: list[str], favourite: str, seed: int) -> list[dict[str, Any]]:
    """``favourite`` wins 80% of its battles; the others are coin flips."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        a, b = rng.sample(models, 2)
        if favourite in (a, b):
            fav_wins = rng.random() < 0.8
            winner = "model_a" if (a == favourite) == fav_wins else "model_b"
        else:
            winner = rng.choice(["model_a", "model_b"])
        out.append({"vote_id": f"rel{seed}-{i}", "arena": "text", "model_a": a, "model_b": b,
                    "winner": winner, "language": "en"})
    return out


async def post_and_wait(ingest: httpx.AsyncClient, api: httpx.AsyncClient,
                        batch: list[dict[str, Any]], total: int) -> None:
    assert (await ingest.post("/v1/votes/batch", json=batch)).status_code == 202

    async def counted() -> bool:
        r = await api.get(BOARD)
        return r.status_code == 200 and r.json()["votes"] == total

    await wait_until(counted, 60, f"{total} votes on text/overall")


def podium(stack: dict[str, ServiceProcess], *args: str) -> subprocess.CompletedProcess[str]:
    """The ``podium`` command line against the stack."""
    env = {**os.environ, "PODIUM_INGEST_URL": stack["ingest"].url,
           "PODIUM_API_URL": stack["api"].url, "PODIUM_INGEST_ADMIN_TOKEN": ADMIN_TOKEN}
    return subprocess.run([sys.executable, "-m", "services.cli", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120, check=False)


async def test_releases_time_travel_diff_and_a_wiped_redis(
    stack: dict[str, ServiceProcess], redis_client: aioredis.Redis, prefix: str
) -> None:
    async with (httpx.AsyncClient(base_url=stack["ingest"].url, timeout=30) as ingest,
                httpx.AsyncClient(base_url=stack["api"].url, timeout=30) as api):
        await post_and_wait(ingest, api, votes(200, ["m1", "m2", "m3", "m4"], "m1", 1), 200)
        r = await ingest.post("/v1/admin/releases", headers=ADMIN,
                              json={"board": "text/overall", "note": "first"})
        assert r.status_code == 201, r.text
        first = r.json()
        assert first["id"].startswith("text.overall.") and first["votes"] == 200
        assert first["leader"] == "m1"

        # votes in between: m4 takes over, m5 arrives
        await post_and_wait(ingest, api,
                            votes(600, ["m1", "m2", "m3", "m4", "m5"], "m4", 2), 800)
        r = await ingest.post("/v1/admin/releases", headers=ADMIN,
                              json={"board": "text/overall", "id": "dec-2026"})
        assert r.status_code == 201, r.text
        second = r.json()
        assert second["id"] == "dec-2026" and second["votes"] == 800

        # immutability: the same id again is refused, and the release is unchanged
        again = await ingest.post("/v1/admin/releases", headers=ADMIN,
                                  json={"board": "text/overall", "id": "dec-2026"})
        assert again.status_code == 409 and "immutable" in again.json()["detail"]
        assert (await ingest.post("/v1/admin/releases", json={"board": "text/overall"})
                ).status_code == 401
        assert (await ingest.post("/v1/admin/releases", headers=ADMIN,
                                  json={"board": "text/nothing"})).status_code == 404

        # time travel, by id and by time; the live board has moved on meanwhile
        old = (await api.get(BOARD, params={"at": first["id"]})).json()
        assert old["votes"] == 200 and old["release"]["id"] == first["id"]
        assert old["rows"][0]["model"] == "m1" and "m5" not in {r["model"] for r in old["rows"]}
        assert (await api.get(BOARD, params={"at": "dec-2026"})).json()["votes"] == 800
        by_time = await api.get(BOARD, params={"at": first["published_at"]})
        assert by_time.json()["release"]["id"] == first["id"]
        by_time = await api.get(BOARD, params={"at": second["published_at"]})
        assert by_time.json()["release"]["id"] == "dec-2026"
        filtered = (await api.get(BOARD, params={"at": "dec-2026", "top": 2})).json()
        assert [r["position"] for r in filtered["rows"]] == [1, 2]

        # bad input: a clear 4xx with what is wrong
        early = await api.get(BOARD, params={"at": "2001-01-01"})
        assert early.status_code == 404 and "first" in early.json()["detail"]
        unknown = await api.get(BOARD, params={"at": "no-such-release"})
        assert unknown.status_code == 404 and "no-such-release" in unknown.json()["detail"]
        other = await api.get("/v1/leaderboards/text/lang:en", params={"at": "dec-2026"})
        assert other.status_code == 404 and "is of board text/overall" in other.json()["detail"]
        assert (await api.get(BOARD, params={"at": "<script>"})).status_code == 422
        assert (await api.get("/v1/releases/nope")).status_code == 404
        assert (await api.get("/v1/releases/nope/diff/dec-2026")).status_code == 404
        no_releases = await api.get("/v1/leaderboards/text/lang:en/releases")
        assert no_releases.status_code == 404

        # the diff: m4 moved up to first, m5 is new, nobody retired
        diff = (await api.get(f"/v1/releases/{first['id']}/diff/dec-2026")).json()
        assert [e["model"] for e in diff["new"]] == ["m5"] and diff["retired"] == []
        m4 = next(m for m in diff["moved"] if m["model"] == "m4")
        assert m4["rank_to"] == 1 and m4["rank_change"] == m4["rank_from"] - 1 > 0
        assert {m["model"] for m in diff["moved"] + diff["unchanged"]} == {"m1", "m2", "m3",
                                                                             "m4"}

        # listing, the whole release, its export, the series over time
        listed = (await api.get("/v1/releases", params={"board": "text/overall"})).json()
        assert [s["id"] for s in listed["releases"]] == ["dec-2026", first["id"]]
        whole = (await api.get("/v1/releases/dec-2026")).json()
        assert whole["methodology"]["preliminary_votes"] == 300
        assert set(whole["registry"]) == {"m1", "m2", "m3", "m4", "m5"}
        exported = (await api.get("/v1/releases/dec-2026/export")).json()
        top = exported["text/overall"]["m4"]
        assert top["final_ranking"] == 1 and top["rating_q025"] < top["rating"]
        series = (await api.get("/v1/leaderboards/text/overall/releases",
                                params={"top": 3})).json()
        assert [s["id"] for s in series["releases"]] == [first["id"], "dec-2026"]
        assert series["series"][0]["model"] == "m4" and len(series["series"]) == 3
        assert len(series["series"][0]["points"]) == 2

        # the same through the command line
        cli = podium(stack, "releases", "diff", first["id"], "dec-2026")
        assert cli.returncode == 0 and "m5" in cli.stdout and "new at" in cli.stdout, cli
        cli = podium(stack, "releases", "publish", "text/overall", "--id", "dec-2026")
        assert cli.returncode == 1 and "409" in cli.stderr, cli

        # Redis loses everything of this deployment: the releases come back from their topic
        before = {rid: (await api.get(f"/v1/releases/{rid}")).json()
                  for rid in (first["id"], "dec-2026")}
        # in one DEL: deleted key by key, the services' replay (which notices a lost marker
        # within a second) could run in between and have its restored keys deleted after it
        await redis_client.delete(*[key async for key in redis_client.scan_iter(
            match=f"{prefix}:*")])
        assert (await api.get("/v1/releases/dec-2026")).status_code == 404

        async def restored() -> bool:
            codes = [(await api.get(f"/v1/releases/{rid}")).status_code for rid in before]
            return codes == [200, 200]

        await wait_until(restored, 60, "the releases replayed into Redis")
        after = {rid: (await api.get(f"/v1/releases/{rid}")).json() for rid in before}
        assert after == before
        back = (await api.get(BOARD, params={"at": first["published_at"]})).json()
        assert back["release"]["id"] == first["id"] and back["votes"] == 200
        # and still immutable after the wipe
        again = await ingest.post("/v1/admin/releases", headers=ADMIN,
                                  json={"board": "text/overall", "id": "dec-2026"})
        assert again.status_code == 409

        # publishing works again once the board (all 800 votes) and the worker's methodology
        # are back
        async def board_back() -> bool:
            r = await api.get(BOARD)
            return r.status_code == 200 and r.json()["votes"] == 800

        await wait_until(board_back, 60, "the board counted again from podium.votes")

        async def published() -> dict[str, Any] | None:
            r = await ingest.post("/v1/admin/releases", headers=ADMIN,
                                  json={"board": "text/overall", "id": "after-wipe"})
            assert r.status_code in (201, 503), r.text  # 503: the methodology not back yet
            return dict(r.json()) if r.status_code == 201 else None

        third = await wait_until(published, 60, "a publish after the wipe", interval=0.5)
        assert third["votes"] == 800
