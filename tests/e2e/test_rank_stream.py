"""Rank changes reach stream clients live, and a reconnecting client misses nothing."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import orjson
import pytest
import websockets

from shared.events import RankChange
from shared.sse import SseComment, SseEvent
from tests.support.infra import Infra
from tests.support.kafka import read_topic
from tests.support.processes import ServiceProcess
from tests.support.sse import Item, next_event, next_event_or_comment, sse_items
from tests.support.wait import wait_until

_ids = itertools.count()
DEADLINE_S = 20


async def battle(ingest: httpx.AsyncClient, winner: str, loser: str, n: int) -> None:
    votes = [{"vote_id": f"v{next(_ids)}-{winner}", "arena": "text", "model_a": winner,
              "model_b": loser, "winner": "model_a", "categories": ["coding"]} for _ in range(n)]
    r = await ingest.post("/v1/votes/batch", json=votes)
    assert r.status_code == 202, r.text


async def ready(events: AsyncIterator[Item]) -> SseEvent:
    return await next_event(events, DEADLINE_S, kinds=("ready",))


async def test_a_flipped_rank_arrives_over_sse_within_the_deadline(
    live_stack: dict[str, ServiceProcess]
) -> None:
    async with (httpx.AsyncClient(base_url=live_stack["ingest"].url, timeout=30) as ingest,
                httpx.AsyncClient(base_url=live_stack["api"].url, timeout=30) as api):
        params = {"board": "text/overall"}
        async with api.stream("GET", "/v1/events/rank-changes", params=params) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            events = sse_items(response)
            await ready(events)
            await battle(ingest, "ursa", "vega", 20)  # ursa 1st, vega 2nd: both new
            first = {RankChange.model_validate_json((await next_event(events, DEADLINE_S)).data)
                     .model for _ in range(2)}
            assert first == {"ursa", "vega"}

            await battle(ingest, "vega", "ursa", 60)  # the flip
            flipped = RankChange.model_validate_json((await next_event(events, DEADLINE_S)).data)
            assert flipped.board == "text/overall" and flipped.old_rank is not None
            assert {flipped.model: (flipped.old_rank, flipped.new_rank)} in (
                {"vega": (2, 1)}, {"ursa": (1, 2)})
            heartbeat = await next_event_or_comment(events, 5, kinds=())
            assert isinstance(heartbeat, SseComment) and heartbeat.text == "heartbeat"

        bad = await api.get("/v1/events/rank-changes", headers={"Last-Event-ID": "zero"})
        assert bad.status_code == 400 and "Last-Event-ID" in bad.text
        assert (await api.get("/v1/events/rank-changes", params={"top": 0})).status_code == 422


async def test_reconnect_with_last_event_id_receives_exactly_the_missed_events(
    live_stack: dict[str, ServiceProcess], infra: Infra, prefix: str
) -> None:
    topic = f"{prefix}.podium.rank-changes"
    async with (httpx.AsyncClient(base_url=live_stack["ingest"].url, timeout=30) as ingest,
                httpx.AsyncClient(base_url=live_stack["api"].url, timeout=30) as api):
        async with api.stream("GET", "/v1/events/rank-changes") as response:
            events = sse_items(response)
            await ready(events)
            await battle(ingest, "ursa", "vega", 20)
            seen = [await next_event(events, DEADLINE_S) for _ in range(4)]  # overall + coding
        last_id = seen[-1].id
        assert last_id is not None and last_id.startswith("0:")
        last = int(last_id.split(":")[1])

        # while disconnected: two flips on two boards, one after the other (sent together,
        # the worker could count both in one batch, and the ranks would not change at all)
        def produced_after_last(n: int) -> Callable[[], Awaitable[list[bytes] | None]]:
            async def probe() -> list[bytes] | None:
                values = await read_topic(infra.kafka_bootstrap, topic)
                return values[last + 1:] if len(values) >= last + 1 + n else None
            return probe

        await battle(ingest, "vega", "ursa", 60)
        await wait_until(produced_after_last(4), DEADLINE_S, "the first flip")
        await battle(ingest, "ursa", "vega", 200)
        missed = await wait_until(produced_after_last(8), DEADLINE_S, "the second flip")

        headers = {"Last-Event-ID": last_id}
        async with api.stream("GET", "/v1/events/rank-changes", headers=headers) as response:
            events = sse_items(response)
            assert (await ready(events)).id == last_id
            got = [await next_event(events, DEADLINE_S) for _ in range(len(missed))]
            assert [e.id for e in got] == [f"0:{last + 1 + i}" for i in range(len(missed))]
            assert [orjson.loads(e.data) for e in got] == [orjson.loads(v) for v in missed]
            # and nothing else: the next thing is a heartbeat
            after = await next_event_or_comment(events, 5)
            assert isinstance(after, SseComment)

        # the same resume point with a filter: only that board's missed events
        async with api.stream("GET", "/v1/events/rank-changes", headers=headers,
                              params={"board": "text/coding", "model": "vega"}) as response:
            events = sse_items(response)
            await ready(events)
            wanted = [orjson.loads(v) for v in missed]
            wanted = [c for c in wanted if c["board"] == "text/coding" and c["model"] == "vega"]
            got = [orjson.loads((await next_event(events, DEADLINE_S)).data) for _ in wanted]
            assert got == wanted and len(wanted) == 2


async def ws_next(ws: Any, kind: str = "rank-change") -> dict[str, Any]:
    """The next message of type ``kind`` (others skipped), within the deadline."""
    async def find() -> dict[str, Any]:
        while True:
            message: dict[str, Any] = orjson.loads(await ws.recv())
            if message["type"] == kind:
                return message

    return await asyncio.wait_for(find(), DEADLINE_S)


async def test_websocket_stream_with_resume(
    live_stack: dict[str, ServiceProcess]
) -> None:
    url = live_stack["api"].url.replace("http://", "ws://") + "/v1/ws/rank-changes"
    async with httpx.AsyncClient(base_url=live_stack["ingest"].url, timeout=30) as ingest:
        async with websockets.connect(url + "?board=text/overall") as ws:
            hello = orjson.loads(await ws.recv())
            assert hello["type"] == "ready"
            await battle(ingest, "ursa", "vega", 20)
            messages = [await ws_next(ws) for _ in range(2)]
            assert {m["change"]["model"] for m in messages} == {"ursa", "vega"}
            assert await ws_next(ws, "heartbeat") == {"type": "heartbeat"}
        last = messages[0]["id"]
        async with websockets.connect(f"{url}?board=text/overall&last_event_id={last}") as ws:
            assert (await ws_next(ws, "ready"))["id"] == last
            again = await ws_next(ws)
            assert again["id"] == messages[1]["id"] and again["change"] == messages[1]["change"]
        async with websockets.connect(f"{url}?top=zero") as ws:
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await ws.recv()
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008


async def test_a_stream_hears_the_significance_it_asks_for(
    live_stack: dict[str, ServiceProcess], infra: Infra, prefix: str
) -> None:
    """`published` hears published-rank moves only, `separated` those and confirmed overtakes,
    `any` every change; each exactly as the worker published them to the topic."""
    topic = f"{prefix}.podium.rank-changes"
    board = "text/overall"
    levels = ("published", "separated", "any")
    async with (httpx.AsyncClient(base_url=live_stack["ingest"].url, timeout=30) as ingest,
                httpx.AsyncClient(base_url=live_stack["api"].url, timeout=30) as api,
                contextlib.AsyncExitStack() as streams):
        opened = {}
        for level in levels:
            response = await streams.enter_async_context(api.stream(
                "GET", "/v1/events/rank-changes",
                params={"board": board, "significance": level}))
            assert response.status_code == 200
            opened[level] = sse_items(response)
            await ready(opened[level])
        async def ahead(winner: str, loser: str) -> list[tuple[str, RankChange]] | None:
            """This board's changes on the topic, once they put ``winner`` above ``loser``."""
            values = await read_topic(infra.kafka_bootstrap, topic)
            changes = [RankChange.model_validate_json(v) for v in values]
            ours = [(f"0:{i}", c) for i, c in enumerate(changes) if c.board == board]
            last = {c.model: c.new_rank for _, c in ours}
            return ours if last.get(winner, 99) < last.get(loser, 0) else None

        # three models, one overtakes clearly; two near-equal ones swap places. One batch at a
        # time (the worker could count battles sent together in one batch)
        for winner, loser, n in [("orion", "lyra", 30), ("lyra", "deneb", 30),
                                 ("mira", "nova", 5), ("nova", "mira", 6),
                                 ("deneb", "orion", 400)]:
            await battle(ingest, winner, loser, n)
            published = await wait_until(lambda w=winner, lo=loser: ahead(w, lo),  # type: ignore[misc]
                                         DEADLINE_S, f"{winner} above {loser}")
        assert {c.significance for _, c in published} >= {"published"}
        for level in levels:
            wanted = [(i, c) for i, c in published if c.heard_at(level)]
            got = [await next_event(opened[level], DEADLINE_S) for _ in wanted]
            assert [(e.id, RankChange.model_validate_json(e.data)) for e in got] == wanted, level
        assert len([1 for _, c in published if c.heard_at("published")]) < len(published)
