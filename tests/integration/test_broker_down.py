"""A vote posted while the broker is down gets 503; its retry after recovery counts once."""

from __future__ import annotations

import httpx

from shared.events import decode_vote_record
from tests.support.infra import ROOT, Infra, free_port, kafka_broker, kafka_script, service_env
from tests.support.kafka import read_topic
from tests.support.processes import ServiceProcess
from tests.support.wait import wait_until


def vote(vote_id: str) -> dict[str, object]:
    return {"vote_id": vote_id, "arena": "text", "model_a": "a", "model_b": "b", "winner": "tie"}


async def test_503_while_broker_is_down_then_retry_is_counted_once(
    infra: Infra, prefix: str, tmp_path: object
) -> None:
    port = free_port()
    run_dir = ROOT / ".run" / f"test-broker-{prefix}"
    with kafka_broker(run_dir, port, free_port()) as broker_env:
        bootstrap = f"127.0.0.1:{port}"
        env = service_env(
            infra, prefix, PODIUM_KAFKA_BOOTSTRAP=bootstrap, PODIUM_INGEST_KAFKA_ACK_TIMEOUT_S="2"
        )
        ingest = await ServiceProcess("ingest", env, log_name=f"ingest-{prefix}").start()
        try:
            async with httpx.AsyncClient(base_url=ingest.url, timeout=30) as client:

                async def posted(vote_id: str) -> httpx.Response | None:
                    r = await client.post("/v1/votes", json=vote(vote_id))
                    return r if r.status_code == 202 else None

                await wait_until(lambda: posted("before"), 30, "first vote accepted")
                kafka_script(broker_env, "stop")
                r = await client.post("/v1/votes", json=vote("during"))
                assert r.status_code == 503
                assert r.headers["retry-after"] == "1" and "retry" in r.json()["detail"]

                kafka_script(broker_env, "start")
                await wait_until(lambda: posted("during"), 60, "retried vote accepted")
                r = await client.post("/v1/votes", json=vote("during"))  # retried again
                assert r.status_code == 202 and r.json()["duplicates"] == ["during"]
        finally:
            ingest.stop()
        values = await read_topic(bootstrap, prefix + ".podium.votes")
    ids = sorted(vote.vote_id for v in values for vote in decode_vote_record(v))
    assert ids == ["before", "during"]
