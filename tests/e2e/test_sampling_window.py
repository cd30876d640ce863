"""The sampling report's recent window end to end (issue #20 item 2), the three services as
processes on the real broker and Redis: votes received now count in the window and all time,
votes whose records carry an older receipt time (written by ingest hours or days ago, replayed)
count all time only; per model, organization and license, the window's battles are what was
sent in it."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from itertools import count
from typing import Any

import httpx
import orjson
import pytest
from aiokafka import AIOKafkaProducer

from tests.support.infra import ADMIN_TOKEN, Infra, service_env
from tests.support.processes import ServiceProcess, running_stack
from tests.support.wait import wait_until

WINDOW_S = 3 * 3600
MODELS = {"ursa": ("Northwind", "open"), "vega": ("Northwind", "proprietary"),
          "wolf": ("Lyra AI", "proprietary")}
_ids = count()


@pytest.fixture
async def stack(infra: Infra, prefix: str) -> AsyncIterator[dict[str, ServiceProcess]]:
    env = service_env(infra, prefix, PODIUM_SAMPLING_WINDOW_S=str(WINDOW_S),
                      PODIUM_RATING_BATCH_WITHIN_S="0.02")
    async with running_stack(env, prefix) as services:
        yield services


def battles(model_a: str, model_b: str, n: int, **extra: Any) -> list[dict[str, Any]]:
    return [{"vote_id": f"w{next(_ids)}", "arena": "text", "model_a": model_a,
             "model_b": model_b, "winner": "model_a" if i % 3 else "model_b", **extra}
            for i in range(n)]


def received(seconds_ago: float) -> str:
    return datetime.fromtimestamp(time.time() - seconds_ago, UTC).isoformat()


def by_name(groups: list[dict[str, Any]]) -> dict[str, int]:
    return {g["name"]: g["battles"] for g in groups}


async def test_the_window_counts_what_was_received_in_it(
    stack: dict[str, ServiceProcess], infra: Infra, prefix: str
) -> None:
    async with httpx.AsyncClient(base_url=stack["ingest"].url, timeout=30) as ingest, \
            httpx.AsyncClient(base_url=stack["api"].url, timeout=10) as api:
        admin = {"authorization": f"Bearer {ADMIN_TOKEN}"}
        for model, (org, license_) in MODELS.items():
            r = await ingest.post("/v1/admin/models", headers=admin, json={
                "id": model, "organization": org, "license": license_})
            assert r.status_code == 201, r.text
        # through ingest, received now: in the window
        for batch in (battles("ursa", "vega", 30), battles("vega", "wolf", 20)):
            r = await ingest.post("/v1/votes/batch", json=batch)
            assert r.status_code == 202, r.text
        # records ingest wrote earlier (replayed): 1 h ago is in the 3 h window; 6 h and 3 days
        # ago are not
        producer = AIOKafkaProducer(bootstrap_servers=infra.kafka_bootstrap, acks="all")
        await producer.start()
        try:
            for votes in (battles("ursa", "wolf", 10, received_at=received(3600)),
                          battles("ursa", "wolf", 15, received_at=received(6 * 3600)),
                          battles("wolf", "vega", 25, received_at=received(3 * 86_400))):
                await producer.send_and_wait(prefix + ".podium.votes", orjson.dumps(votes),
                                             key=b"text")
        finally:
            await producer.stop()

        async def report_of_all() -> dict[str, Any] | None:
            r = await api.get("/v1/leaderboards/text/overall/sampling")
            doc: dict[str, Any] = r.json()
            return doc if r.status_code == 200 and doc["battles"] == 100 else None

        report = await wait_until(report_of_all, 60, "the 100 votes counted")
        assert by_name(report["models"]) == {"ursa": 55, "vega": 75, "wolf": 70}
        recent = report["recent"]
        assert recent["window_s"] == WINDOW_S
        hour_now = int(time.time()) // 3600 * 3600
        assert hour_now - WINDOW_S <= recent["since"] <= hour_now - WINDOW_S + 3600
        assert recent["battles"] == 60
        assert by_name(recent["models"]) == {"ursa": 40, "vega": 50, "wolf": 30}
        assert by_name(recent["organizations"]) == {"Northwind": 90, "Lyra AI": 30}
        assert by_name(recent["licenses"]) == {"open": 40, "proprietary": 80}
        assert {g["name"]: g["share"] for g in recent["models"]} == pytest.approx(
            {"ursa": 40 / 120, "vega": 50 / 120, "wolf": 30 / 120}, abs=1e-5)
        assert all(g["uniform_share"] == pytest.approx(1 / 3, abs=1e-5)
                   for g in recent["models"])
