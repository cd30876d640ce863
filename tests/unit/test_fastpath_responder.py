"""The vote fast path's responder: a group writes a request's 202 itself only when uvicorn
would not wait to write it, and every answer is written exactly once."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import uvicorn

from services.common.runtime import SERVER_STACK
from services.ingest.single_vote_route import QUIET_WRITE_BUFFER_BYTES, _Responder
from services.ingest.submission import Answer
from tests.support.infra import free_port


class Flow:
    def __init__(self, paused: bool) -> None:
        self.write_paused = paused


class Transport:
    def __init__(self, buffered: int) -> None:
        self.buffered = buffered

    def get_write_buffer_size(self) -> int:
        return self.buffered


class Cycle:
    """What uvicorn's RequestResponseCycle exposes (its ``send`` is a bound method of it)."""

    def __init__(self, paused: bool = False, buffered: int = 0) -> None:
        self.flow = Flow(paused)
        self.transport = Transport(buffered)
        self.messages: list[dict[str, Any]] = []

    async def send(self, message: dict[str, Any]) -> None:
        self.messages.append(message)


ANSWER = Answer(202, {"accepted": ["v-1"], "duplicates": []})


async def test_writes_once_when_the_connection_can_take_it() -> None:
    cycle = Cycle()
    responder = _Responder(cycle.send, "req-1")
    assert await responder.if_ready(ANSWER)
    await responder(ANSWER)  # the request's own task, afterwards: nothing more
    assert [m["type"] for m in cycle.messages] == ["http.response.start", "http.response.body"]
    start, body = cycle.messages
    assert start["status"] == 202
    assert (b"x-request-id", b"req-1") in start["headers"]
    assert body["body"] == b'{"accepted":["v-1"],"duplicates":[]}'


async def test_a_paused_or_backed_up_connection_is_left_to_the_request() -> None:
    for cycle in (Cycle(paused=True), Cycle(buffered=QUIET_WRITE_BUFFER_BYTES + 1)):
        responder = _Responder(cycle.send, "req-2")
        assert not await responder.if_ready(ANSWER)
        assert cycle.messages == []  # the group did not wait on this client
        await responder(ANSWER)
        assert len(cycle.messages) == 2


async def test_another_server_is_left_to_the_request() -> None:
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:  # no uvicorn state behind it
        sent.append(message)

    responder = _Responder(send, "req-3")
    assert not await responder.if_ready(ANSWER)
    assert sent == []
    await responder(Answer(429, {"detail": "slow down"}, {"Retry-After": "2"}, "rate_limited"))
    assert sent[0]["status"] == 429
    assert (b"retry-after", b"2") in sent[0]["headers"]


async def test_uvicorn_exposes_what_the_responder_looks_at() -> None:
    """On the server stack the services run on, a group can write the answer (were uvicorn to
    rename what ``if_ready`` reads, every answer would quietly go the slower way)."""
    ready: list[bool] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        ready.append(await _Responder(send, "req-4").if_ready(ANSWER))

    port = free_port()
    stack = {k: v for k, v in SERVER_STACK.items() if k != "loop"}  # this test's own loop
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning", **stack))
    serving = asyncio.ensure_future(server.serve())
    try:
        while not server.started:  # noqa: ASYNC110 (uvicorn offers no event for it)
            await asyncio.sleep(0.01)
        async with httpx.AsyncClient() as client:
            reply = await client.post(f"http://127.0.0.1:{port}/v1/votes", content=b"{}")
    finally:
        server.should_exit = True
        await serving
    assert ready == [True]
    assert reply.status_code == 202
    assert reply.json() == {"accepted": ["v-1"], "duplicates": []}
    assert reply.headers["x-request-id"] == "req-4"
