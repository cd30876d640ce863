"""Scheduled releases (``PODIUM_INGEST_RELEASE_EVERY_S``) with two ingest replicas on real Kafka
and Redis: every slot gets one release per board, named by the slot, written to the releases
topic once (the replicas agree on the id and only one of them publishes it)."""

from __future__ import annotations

from collections import Counter
from datetime import datetime

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from tests.support.infra import Infra, service_env
from tests.support.processes import ServiceProcess, running_stack
from tests.support.wait import wait_until

pytestmark = [pytest.mark.timeout(180)]


async def topic_keys(bootstrap: str, topic: str) -> list[str]:
    """Every record key of a one-partition topic, from its start to its end as of now."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        end = (await consumer.end_offsets([tp]))[tp]
        keys: list[str] = []
        while await consumer.position(tp) < end:
            for records in (await consumer.getmany(tp, timeout_ms=1000)).values():
                keys += [r.key.decode() for r in records if r.offset < end]
        return keys
    finally:
        await consumer.stop()


async def test_two_replicas_publish_each_scheduled_release_once(infra: Infra, prefix: str
                                                                ) -> None:
    env = service_env(infra, prefix, PODIUM_RATING_BATCH_WITHIN_S="0.02",
                      PODIUM_INGEST_RELEASE_EVERY_S="1",
                      PODIUM_INGEST_RELEASE_BOARDS='["text/overall"]')
    async with running_stack(env, prefix) as services:
        second = await ServiceProcess("ingest", env, log_name=f"ingest2-{prefix}").start()
        try:
            async with (httpx.AsyncClient(base_url=services["ingest"].url, timeout=30) as ingest,
                        httpx.AsyncClient(base_url=services["api"].url, timeout=30) as api):
                votes = [{"vote_id": f"s{i}", "arena": "text", "model_a": "m1",
                          "model_b": "m2", "winner": "model_a" if i % 3 else "model_b"}
                         for i in range(60)]
                assert (await ingest.post("/v1/votes/batch", json=votes)).status_code == 202

                async def four_releases() -> list[dict[str, object]] | None:
                    found = (await api.get("/v1/releases")).json()["releases"]
                    return found if len(found) >= 4 else None

                releases = await wait_until(four_releases, 60, "four scheduled releases")
        finally:
            assert second.stop() == 0
    for release in releases:
        stamp = datetime.fromisoformat(str(release["published_at"]))
        assert stamp.microsecond == 0 and release["note"] == "scheduled"
        assert release["board"] == "text/overall"
        assert str(release["id"]).startswith("text.overall.")
    keys = await topic_keys(infra.kafka_bootstrap, f"{prefix}.podium.releases")
    twice = {k: n for k, n in Counter(keys).items() if n > 1}
    assert len(keys) >= 4 and not twice, f"published more than once: {twice}"
