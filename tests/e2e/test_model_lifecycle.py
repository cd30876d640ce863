"""Model lifecycle (issue #19 item 2), ingest, rating and api as processes on the real broker and
a Redis of their own: a deprecated model leaves the default board but stays in the fit; the
listing threshold and the preliminary policy (fresh votes since ``public_since``) show in the
rows with their reasons; bad lifecycle input gets a 4xx; all of it survives a Redis wipe."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from tests.support.infra import ADMIN_TOKEN, ROOT, Infra, free_port, redis_server, service_env
from tests.support.processes import ServiceProcess, running_stack
from tests.support.votes import post_all
from tests.support.wait import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
MODELS = ["alpha", "beta", "gamma", "delta"]
BOARD = "/v1/leaderboards/text/overall"
EVERYTHING = BOARD + "?include_deprecated=true&include_unlisted=true"
TO_LIST, FRESH = 20, 30


@pytest.fixture
async def stack(infra: Infra, prefix: str
                ) -> AsyncIterator[tuple[dict[str, ServiceProcess], aioredis.Redis]]:
    port = free_port()
    with redis_server(ROOT / ".run" / f"test-redis-{prefix}", port):
        url = f"redis://127.0.0.1:{port}/0"
        env = service_env(Infra(infra.kafka_bootstrap, url), prefix,
                          PODIUM_RECORDS_CHECK_S="0.5", PODIUM_RATING_BATCH_WITHIN_S="0.02",
                          PODIUM_RATING_PRELIMINARY_VOTES="0",
                          PODIUM_API_MIN_VOTES_TO_LIST=str(TO_LIST),
                          PODIUM_API_PRELIMINARY_MIN_FRESH_VOTES=str(FRESH))
        client = aioredis.Redis.from_url(url)
        try:
            async with running_stack(env, prefix) as services:
                yield services, client
        finally:
            await client.aclose()


def votes(n: int, seed: int, models: list[str], first: str | None = None
          ) -> list[dict[str, Any]]:
    """Random battles among ``models`` (with ``first`` on one side of each, when given)."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        if first is None:
            a, b = rng.sample(models, 2)
        else:
            a, b = first, rng.choice([m for m in models if m != first])
        out.append({"vote_id": f"v{seed}-{i}", "arena": "text", "model_a": a, "model_b": b,
                    "winner": rng.choice(["model_a", "model_b", "tie"])})
    return out


async def board(api: httpx.AsyncClient, path: str = BOARD) -> dict[str, Any]:
    r = await api.get(path)
    assert r.status_code == 200, r.text
    doc: dict[str, Any] = r.json()
    return doc


def rows(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["model"]: r for r in doc["rows"]}


async def counted(api: httpx.AsyncClient, total: int) -> dict[str, Any]:
    async def done() -> dict[str, Any] | None:
        r = await api.get(EVERYTHING)
        return r.json() if r.status_code == 200 and r.json()["votes"] == total else None
    found: dict[str, Any] = await wait_until(done, 60, f"{total} votes on text/overall")
    return found


async def test_lifecycle_rules_on_the_boards_and_through_a_redis_wipe(
    stack: tuple[dict[str, ServiceProcess], aioredis.Redis]
) -> None:
    services, redis_client = stack
    async with (httpx.AsyncClient(base_url=services["ingest"].url, timeout=30) as ingest,
                httpx.AsyncClient(base_url=services["api"].url, timeout=10) as api):
        await post_all(ingest, votes(400, 1, MODELS) + votes(5, 2, ["rookie", "alpha"]))
        everything = await counted(api, 405)
        assert set(rows(everything)) == {*MODELS, "rookie"}

        # the listing threshold: rookie (5 votes) is out of the default view (the fast path)
        default = await board(api)
        assert set(rows(default)) == set(MODELS)
        rookie = rows(everything)["rookie"]
        assert rookie["listed"] is False and rookie["votes"] == 5
        assert rookie["why"] == [f"unlisted: 5 votes, fewer than the {TO_LIST} needed to be "
                                 "listed"]
        assert all(r["listed"] and not r["deprecated"] and not r["preliminary"]
                   and r["why"] == [] for r in default["rows"])

        # bad input: an unknown model, bad dates, a release in the future
        r = await ingest.patch("/v1/admin/models/nobody", headers=ADMIN,
                               json={"deprecated": True})
        assert r.status_code == 404 and "'nobody' is not registered" in r.text, r.text
        future = (datetime.now(UTC) + timedelta(days=2)).isoformat()
        for fields, says in (({"release_date": "2025-02-30"}, "release_date"),
                             ({"public_since": "2025-12-01T10:00:00"}, "timezone"),
                             ({"public_since": "soon"}, "public_since"),
                             ({"public_since": future}, "in the future")):
            r = await ingest.patch("/v1/admin/models/alpha", headers=ADMIN, json=fields)
            assert r.status_code == 422 and says in r.text, (fields, r.text)

        # deprecation: hidden by default, shown on request, still in the fit
        r = await ingest.patch("/v1/admin/models/delta", headers=ADMIN,
                               json={"deprecated": True})
        assert r.status_code == 200 and r.json()["deprecated_at"], r.text

        async def hidden() -> dict[str, Any] | None:
            doc = await board(api)
            return doc if "delta" not in rows(doc) else None

        default = await wait_until(hidden, 10, "delta gone from the default board")
        assert set(rows(default)) == {"alpha", "beta", "gamma"}
        assert [r["position"] for r in default["rows"]] == [1, 2, 3]
        shown = rows(await board(api, BOARD + "?include_deprecated=true"))
        assert shown["delta"]["deprecated"] is True
        assert shown["delta"]["why"][0].startswith("deprecated since ")
        assert default["models"] == 5, "the deprecated model is still on the board"
        for model in ("alpha", "beta", "gamma"):  # the others' scores did not move
            assert rows(default)[model]["score"] == rows(everything)[model]["score"]
            assert rows(default)[model]["rank"] == rows(everything)[model]["rank"]
        # votes keep counting for it, and it stays in the others' fit
        await post_all(ingest, votes(100, 3, MODELS, first="delta"))
        everything = await counted(api, 505)
        assert rows(everything)["delta"]["votes"] == shown["delta"]["votes"] + 100
        default = await board(api)
        assert set(rows(default)) == {"alpha", "beta", "gamma"}
        for model in ("alpha", "beta", "gamma"):
            assert rows(default)[model]["score"] == rows(everything)[model]["score"]

        # preliminary: fresh votes since public_since was recorded
        r = await ingest.patch("/v1/admin/models/gamma", headers=ADMIN,
                               json={"public_since": datetime.now(UTC).isoformat()})
        assert r.status_code == 200, r.text
        since = r.json()["public_since"]
        baseline = r.json()["public_votes"]["text/overall"]
        assert baseline == rows(everything)["gamma"]["votes"]

        async def gamma(why: list[str]) -> bool:
            row = rows(await board(api))["gamma"]
            return bool(row["why"] == why and row["preliminary"] == bool(why))

        await wait_until(lambda: gamma([f"preliminary: 0 votes since public release, fewer "
                                        f"than {FRESH}"]), 10, "gamma preliminary")
        await post_all(ingest, votes(20, 4, ["alpha", "beta", "gamma"], first="gamma"))
        await counted(api, 525)
        await wait_until(lambda: gamma([f"preliminary: 20 votes since public release, fewer "
                                        f"than {FRESH}"]), 10, "gamma still preliminary")
        r = await ingest.patch("/v1/admin/models/gamma", headers=ADMIN,  # a retry
                               json={"public_since": since})
        assert r.status_code == 200 and r.json()["public_votes"]["text/overall"] == baseline
        await post_all(ingest, votes(20, 5, ["alpha", "beta", "gamma"], first="gamma"))
        await counted(api, 545)
        await wait_until(lambda: gamma([]), 10, "gamma settled after 40 fresh votes")

        # a Redis wipe: the registry comes back from its topic, the boards from the votes
        before = {path: await board(api, path) for path in (BOARD, EVERYTHING)}
        await redis_client.flushall()
        seen: dict[str, Any] = {}

        async def same_again() -> bool:
            for path, doc in before.items():
                seen[path] = await board(api, path)
                if summary(seen[path]) != summary(doc):
                    return False
            return True

        try:
            await wait_until(same_again, 90, "both views as before the wipe")
        except AssertionError:
            for path, doc in before.items():
                assert summary(seen.get(path, {})) == summary(doc), path
            raise


def summary(doc: dict[str, Any]) -> list[tuple[Any, ...]]:
    """What must come back after a wipe: each row's model, votes, place and verdicts, and its
    score to a micro-point (a refit from scratch may differ in the last bits)."""
    return [(r["model"], r["votes"], r["position"], r["listed"], r["deprecated"],
             r["preliminary"], tuple(r["why"]), round(r["score"], 6))
            for r in doc.get("rows", [])]
