"""A subscription whose close hangs (redis/redis-py#3941) must not hold the api's shutdown."""

from __future__ import annotations

import asyncio
from typing import Any

from services.api.board_cache import _close


class HangingConnection:
    def __init__(self) -> None:
        self.dropped_without_waiting = False

    async def disconnect(self, nowait: bool = False) -> None:
        self.dropped_without_waiting = nowait


class HangingPubSub:
    def __init__(self) -> None:
        self.connection = HangingConnection()

    async def aclose(self) -> None:
        await asyncio.Event().wait()  # never set: waits for the socket forever


async def test_a_hanging_close_is_cut_short_and_the_connection_dropped() -> None:
    pubsub: Any = HangingPubSub()
    await asyncio.wait_for(_close(pubsub, within_s=0.05), timeout=2)
    assert pubsub.connection.dropped_without_waiting
