"""RequestAdmission (services/common/http.py): at most ``limit`` requests in the app, the rest
wait in arrival order up to the bound, then 503 + Retry-After; exempt paths never wait."""

from __future__ import annotations

import asyncio

from starlette.types import Message, Receive, Scope, Send

from services.common.http import RequestAdmission
from tests.support.wait import wait_until


class HeldApp:
    """An ASGI app that answers 200 once released (counts who got in)."""

    def __init__(self) -> None:
        self.entered = 0
        self.release = asyncio.Event()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.entered += 1
        if scope["path"] != "/readyz":
            await self.release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})


async def call(app: RequestAdmission, path: str) -> tuple[int, dict[bytes, bytes]]:
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    await app({"type": "http", "path": path, "method": "GET", "headers": []}, receive, send)
    return sent[0]["status"], dict(sent[0]["headers"])


async def test_requests_past_the_limit_wait_then_are_shed_with_retry_after() -> None:
    inner = HeldApp()
    app = RequestAdmission(inner, limit=2, wait_s=0.2)
    held = [asyncio.create_task(call(app, "/v1/models")) for _ in range(2)]
    await wait_until(lambda: _entered(inner, 2), 5, "two requests in")
    status, headers = await call(app, "/v1/models")  # waits 0.2 s for a turn, gets none
    assert status == 503 and headers[b"retry-after"] == b"1"
    assert await call(app, "/readyz") == (200, {})  # exempt: never held back
    waiting = asyncio.create_task(call(app, "/v1/models"))
    inner.release.set()
    assert [s for s, _ in await asyncio.gather(*held, waiting)] == [200, 200, 200]


async def _entered(app: HeldApp, n: int) -> bool:
    return app.entered >= n
