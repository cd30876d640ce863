"""Rank changes fan out from one Kafka consumer per api process: many streams get every change in
order, resumes (from memory or from Kafka) lose and repeat nothing even while changes keep
coming, a slow stream delays no other, and a stream moves between api processes by its id."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import httpx
import orjson

from tests.support.infra import Infra, service_env
from tests.support.processes import ServiceProcess
from tests.support.sse_swarm import (
    SseSubscriber,
    kafka_connections,
    publish,
    rank_change,
)
from tests.support.wait import wait_until

DEADLINE_S = 30
TOTAL = 12_000  # changes of ~450 bytes: more than the sockets' buffers hold

@contextlib.asynccontextmanager
async def api_process(infra: Infra, prefix: str, name: str = "api",
                      **settings: str) -> AsyncIterator[ServiceProcess]:
    env = service_env(infra, prefix, PODIUM_API_HEARTBEAT_S="1",
                      PODIUM_API_STREAM_MAX_PER_ADDRESS="1000", **settings)
    api = await ServiceProcess("api", env, log_name=f"{name}-{prefix}").start()
    try:
        yield api
    finally:
        assert api.stop() == 0


@contextlib.asynccontextmanager
async def streaming(api: ServiceProcess, subs: list[SseSubscriber],
                    paused: asyncio.Event | None = None) -> AsyncIterator[list[SseSubscriber]]:
    """``subs`` connected and reading (each has had its ``ready``)."""
    tasks = []
    try:
        for sub in subs:
            reader, writer = await sub.open()
            assert sub.status == 200, sub.status
            tasks.append(asyncio.create_task(sub.run(reader, writer, paused)))
        if paused is None:
            await wait_until(lambda: all_have(subs, "ready"), DEADLINE_S, "every ready")
        yield subs
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def reached(subs: list[SseSubscriber], event_id: str) -> bool:
    return all(event_id in s.ids() for s in subs)


async def all_have(subs: list[SseSubscriber], kind: str, n: int = 1) -> bool:
    return all(len(s.ids(kind)) >= n for s in subs)


def offset(event_id: str) -> int:
    return int(event_id.split(":")[1])


def subscriber(api: ServiceProcess, **kw: object) -> SseSubscriber:
    return SseSubscriber("127.0.0.1", api.port or 0, **kw)  # type: ignore[arg-type]


async def test_600_streams_get_every_change_in_order_from_one_consumer(
    infra: Infra, prefix: str
) -> None:
    topic = f"{prefix}.podium.rank-changes"
    kafka_port = int(infra.kafka_bootstrap.rsplit(":", 1)[1])
    async with (api_process(infra, prefix) as api,  # the default caps but per address
                streaming(api, [subscriber(api) for _ in range(600)]) as subs):
        changes = [rank_change() for _ in range(50)]
        await publish(infra.kafka_bootstrap, topic, changes)
        await wait_until(lambda: all_have(subs, "rank-change", 50), DEADLINE_S, "50 changes")
        start = offset(subs[0].ids("ready")[0]) + 1
        wanted = [f"0:{start + i}" for i in range(50)]
        for sub in subs:
            assert sub.ids() == wanted
            got = [orjson.loads(e.data)["model"] for e in sub.events if e.event == "rank-change"]
            assert got == [c.model for c in changes]
        # one feed consumer (and the readiness probe's client), not one consumer per stream
        assert api.proc is not None
        assert kafka_connections(api.proc.pid, kafka_port) <= 4


async def test_resume_from_memory_and_from_kafka_while_changes_keep_coming(
    infra: Infra, prefix: str
) -> None:
    topic = f"{prefix}.podium.rank-changes"
    await publish(infra.kafka_bootstrap, topic, [rank_change() for _ in range(100)])
    async with api_process(infra, prefix, PODIUM_API_STREAM_BUFFER_EVENTS="30",
                           PODIUM_API_STREAM_CATCHUP_MAX_EVENTS="200") as api:
        async with streaming(api, [subscriber(api)]) as (first,):
            assert first.ids("ready") == ["0:99"]  # the feed holds 70..99 now
        resumes = [subscriber(api, last_event_id="0:9"),  # from Kafka (10..69), then memory
                   subscriber(api, last_event_id="0:85"),  # from memory
                   subscriber(api, last_event_id="0:99", query="?board=text/coding")]
        more = [rank_change(board="text/coding" if i % 3 == 0 else "text/overall")
                for i in range(150)]
        publishing = asyncio.create_task(publish_slowly(infra.kafka_bootstrap, topic, more))
        async with streaming(api, resumes):
            await publishing
            await wait_until(lambda: reached(resumes[:2], "0:249"), DEADLINE_S,
                             "every change up to 0:249")
            assert resumes[0].ids() == [f"0:{i}" for i in range(10, 250)]
            assert resumes[1].ids() == [f"0:{i}" for i in range(86, 250)]
            coding = [f"0:{100 + i}" for i in range(150) if i % 3 == 0]
            await wait_until(lambda: all_have(resumes[2:], "rank-change", len(coding)),
                             DEADLINE_S, "the coding changes")
            assert resumes[2].ids() == coding

        # further back than the catch-up bound: told to reload, and where to go on from
        async with streaming(api, [subscriber(api, last_event_id="0:-1")]) as (old,):
            await wait_until(lambda: all_have([old], "reload"), DEADLINE_S, "reload")
            assert old.ids("reload") == ["0:249"] and old.ids() == []
            assert "reload" in orjson.loads(old.events[-1].data)["detail"]
        async with httpx.AsyncClient(base_url=api.url) as client:
            ahead = await client.get("/v1/events/rank-changes", headers={"Last-Event-ID": "0:250"})
            assert ahead.status_code == 400 and "past the end" in ahead.text


async def publish_slowly(bootstrap: str, topic: str, changes: list[object]) -> None:
    """In ten bursts, so that resumes meet changes arriving while they catch up."""
    step = max(1, len(changes) // 10)
    for i in range(0, len(changes), step):
        await publish(bootstrap, topic, changes[i:i + step])  # type: ignore[arg-type]


async def test_a_slow_stream_is_cut_off_without_delaying_the_others(
    infra: Infra, prefix: str
) -> None:
    topic = f"{prefix}.podium.rank-changes"
    async with api_process(infra, prefix, PODIUM_API_STREAM_BUFFER_EVENTS="500") as api:
        reading = asyncio.Event()
        async with (streaming(api, [subscriber(api)]) as (fast,),
                    streaming(api, [subscriber(api, recv_buffer=4096)], reading) as (slow,)):
            big = [rank_change(model="m-" + "x" * 120 + str(i)) for i in range(TOTAL)]
            await publish(infra.kafka_bootstrap, topic, big)
            await wait_until(lambda: all_have([fast], "rank-change", TOTAL), DEADLINE_S,
                             "every change on the fast stream")
            reading.set()  # the slow one reads at last: its stream ends with too-slow
            await wait_until(lambda: all_have([slow], "too-slow"), DEADLINE_S,
                             f"too-slow (got {len(slow.ids())}, ended: {slow.ended})")
            assert slow.ended or await wait_until(lambda: _ended(slow), DEADLINE_S, "the end")
            got = slow.ids()
            assert 0 < len(got) < TOTAL and got == fast.ids()[:len(got)]
            last = slow.last_event_id
        resumed = subscriber(api, last_event_id=last)
        async with streaming(api, [resumed]):
            rest = TOTAL - len(got)
            await wait_until(lambda: all_have([resumed], "rank-change", rest), DEADLINE_S,
                             "the rest")
            assert got + resumed.ids() == fast.ids()


async def _ended(sub: SseSubscriber) -> bool:
    return sub.ended


async def test_a_stream_moves_to_another_api_process_when_its_own_restarts(
    infra: Infra, prefix: str
) -> None:
    topic = f"{prefix}.podium.rank-changes"
    changes = [rank_change() for _ in range(300)]
    async with api_process(infra, prefix, "api-b") as other:
        first = api_process(infra, prefix, "api-a")
        api = await first.__aenter__()
        try:
            sub = subscriber(api)
            async with streaming(api, [sub]):
                publishing = asyncio.create_task(
                    publish_slowly(infra.kafka_bootstrap, topic, changes))
                await wait_until(lambda: all_have([sub], "rank-change", 30), DEADLINE_S,
                                 "the first changes")
                stopping = asyncio.create_task(asyncio.to_thread(api.stop))
                # ended as the stop begins, not after the 10 s graceful wait for open responses
                await wait_until(lambda: _ended(sub), 5, "the stream's end")
                assert await stopping == 0
            moved = subscriber(other, last_event_id=sub.last_event_id)
            async with streaming(other, [moved]):
                await publishing
                start = offset(sub.ids("ready")[0]) + 1
                await wait_until(lambda: all_have([moved], "rank-change", 300 - len(sub.ids())),
                                 DEADLINE_S, "the rest on the other process")
                ids = sub.ids() + moved.ids()
                assert ids == [f"0:{start + i}" for i in range(300)]
            await api.start()
        finally:
            await first.__aexit__(None, None, None)
