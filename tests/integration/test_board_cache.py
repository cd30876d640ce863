"""The api's cached board reads on a real Redis: the fast path's bytes equal the FastAPI route's,
announced changes (standings writes, registry changes) are served at once, unannounced ones within
the documented bound, and a lost subscription falls back to polling."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import orjson
import redis.asyncio as aioredis

from services.api.app import create_app
from services.api.board_cache import RenderedBoards
from services.api.board_fast_path import NO_FILTERS, BoardFastPath
from services.api.standings import StandingsReader
from services.common.registry import ModelRegistry
from services.rating.store import RatingStore
from shared.events import ModelFields
from shared.keys import KeyLayout
from shared.settings import ApiSettings
from tests.integration.test_read_api import Clock, seed
from tests.support.infra import Infra
from tests.support.wait import wait_until

BOARD = "/v1/leaderboards/text/overall"


@asynccontextmanager
async def api_app(infra: Infra, prefix: str, fast_path: bool = True, **settings: Any
                  ) -> AsyncIterator[tuple[BoardFastPath, httpx.AsyncClient]]:
    """The api as ``python -m services.api`` serves it (fast path in front), or the bare
    FastAPI app; lifespan run and the board-changes subscription up."""
    app = create_app(ApiSettings(redis_url=infra.redis_url, key_prefix=prefix,
                                 kafka_bootstrap=infra.kafka_bootstrap, **settings))
    async with app.router.lifespan_context(app):
        cache: RenderedBoards = app.state.rendered_boards

        async def subscribed() -> bool:
            return cache.pushed

        await wait_until(subscribed, 10, "the board-changes subscription", interval=0.02)
        served = app if fast_path else app.app
        transport = httpx.ASGITransport(app=served)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            yield app, client


async def votes(client: httpx.AsyncClient) -> int:
    r = await client.get(BOARD)
    assert r.status_code == 200, r.text
    return int(orjson.loads(r.content)["votes"])


async def served_within(client: httpx.AsyncClient, expected: int, timeout: float) -> float:
    """Seconds until the board read shows ``expected`` votes (fails after ``timeout``)."""
    start = time.monotonic()

    async def shown() -> bool:
        return await votes(client) == expected

    await wait_until(shown, timeout, f"the board to show {expected} votes", interval=0.005)
    return time.monotonic() - start


async def standings(redis_client: aioredis.Redis, prefix: str) -> dict[str, Any]:
    raw = await RatingStore(redis_client, KeyLayout(prefix)).read_standings("text", "overall")
    assert raw is not None
    return dict(orjson.loads(raw))


async def test_fast_path_bytes_equal_the_route(infra: Infra, prefix: str,
                                               redis_client: aioredis.Redis) -> None:
    await seed(redis_client, KeyLayout(prefix), Clock())
    async with api_app(infra, prefix) as (_, fast), \
            api_app(infra, prefix, fast_path=False) as (_, routed):
        boards = orjson.loads((await routed.get("/v1/leaderboards")).content)["boards"]
        assert {"text/overall", "bench/gpqa"} <= {b["board"] for b in boards}
        for name in [b["board"] for b in boards] + ["text/nope"]:
            url = f"/v1/leaderboards/{name}"
            for _ in range(2):  # rendered, then cached
                by_route, by_fast_path = await routed.get(url), await fast.get(url)
                assert by_fast_path.status_code == by_route.status_code, name
                assert by_fast_path.content == by_route.content, name
                for header in ("content-type", "content-length"):
                    assert by_fast_path.headers[header] == by_route.headers[header], name


async def test_announced_standings_write_is_served_at_once(
        infra: Infra, prefix: str, redis_client: aioredis.Redis) -> None:
    await seed(redis_client, KeyLayout(prefix), Clock())
    store = RatingStore(redis_client, KeyLayout(prefix))
    doc = await standings(redis_client, prefix)
    n = doc["votes"]
    async with api_app(infra, prefix, api_read_recheck_s=60) as (_, api):
        assert await votes(api) == n
        # not announced: the cached response stays (reads do not poll Redis while subscribed)
        await redis_client.set(KeyLayout(prefix).standings("text", "overall"),
                               orjson.dumps({**doc, "votes": n + 1}))
        await asyncio.sleep(0.2)
        assert await votes(api) == n
        # announced, as the rating service writes: served from the next read after the message
        await store.write_standings("text", "overall", orjson.dumps({**doc, "votes": n + 2}))
        assert await served_within(api, n + 2, timeout=1.0) < 0.5
        # the FastAPI route (filters) shares the invalidation
        r = await api.get(BOARD, params={"top": 1})
        assert orjson.loads(r.content)["votes"] == n + 2


async def test_registry_change_is_served_at_once(infra: Infra, prefix: str,
                                                 redis_client: aioredis.Redis) -> None:
    await seed(redis_client, KeyLayout(prefix), Clock())
    registry = ModelRegistry(redis_client, KeyLayout(prefix))
    async with api_app(infra, prefix, api_read_recheck_s=60) as (_, api):

        async def alpha_name() -> str:
            rows = orjson.loads((await api.get(BOARD)).content)["rows"]
            return str(next(r for r in rows if r["model"] == "alpha")["display_name"])

        assert await alpha_name() == "Alpha One"
        await registry.update("alpha", ModelFields(display_name="Alpha Two"))

        async def renamed() -> bool:
            return await alpha_name() == "Alpha Two"

        await wait_until(renamed, 0.5, "the registry change on the board", interval=0.005)


async def test_unannounced_write_is_served_within_the_recheck_age(
        infra: Infra, prefix: str, redis_client: aioredis.Redis) -> None:
    await seed(redis_client, KeyLayout(prefix), Clock())
    doc = await standings(redis_client, prefix)
    async with api_app(infra, prefix, api_read_recheck_s=0.3) as (_, api):
        assert await votes(api) == doc["votes"]
        await redis_client.set(KeyLayout(prefix).standings("text", "overall"),
                               orjson.dumps({**doc, "votes": doc["votes"] + 1}))
        assert await served_within(api, doc["votes"] + 1, timeout=2.0) < 0.3 + 0.2


async def test_lost_subscription_polls_then_resubscribes(
        infra: Infra, prefix: str, redis_client: aioredis.Redis) -> None:
    await seed(redis_client, KeyLayout(prefix), Clock())
    store = RatingStore(redis_client, KeyLayout(prefix))
    doc = await standings(redis_client, prefix)
    n = doc["votes"]
    async with api_app(infra, prefix, api_read_recheck_s=60, api_read_cache_s=0.05) as (app, api):
        cache: RenderedBoards = app.state.rendered_boards
        assert await votes(api) == n
        cache.lost()  # as when nothing was heard for a while: reads poll every 50 ms
        await redis_client.set(KeyLayout(prefix).standings("text", "overall"),
                               orjson.dumps({**doc, "votes": n + 1}))
        assert await served_within(api, n + 1, timeout=1.0) < 0.05 + 0.2

        # the server drops the subscriber's connection: it subscribes again (and drops every
        # cached response, as messages may have been missed); announced writes are served again
        await redis_client.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
        await store.write_standings("text", "overall", orjson.dumps({**doc, "votes": n + 2}))
        await served_within(api, n + 2, timeout=2.0)

        async def subscribed() -> bool:
            return cache.pushed

        await wait_until(subscribed, 5, "the subscription back", interval=0.02)
        await store.write_standings("text", "overall", orjson.dumps({**doc, "votes": n + 3}))
        assert await served_within(api, n + 3, timeout=1.0) < 0.5


class CountingReader(StandingsReader):
    def __init__(self, client: aioredis.Redis, keys: KeyLayout) -> None:
        super().__init__(client, keys)
        self.reads = 0

    async def board(self, arena: str, view: str, keys: KeyLayout | None = None) -> bytes | None:
        self.reads += 1
        return await super().board(arena, view, keys)


async def test_concurrent_misses_read_redis_once(prefix: str,
                                                 redis_client: aioredis.Redis) -> None:
    await seed(redis_client, KeyLayout(prefix), Clock())
    reader = CountingReader(redis_client, KeyLayout(prefix))
    registry = ModelRegistry(redis_client, KeyLayout(prefix))
    cache = RenderedBoards(fresh_s=60)

    async def read() -> bytes:
        entry = await cache.rendered(reader, registry, "text", "overall", NO_FILTERS,
                                     NO_FILTERS.render)
        assert entry is not None
        return entry.body

    bodies = await asyncio.gather(*(read() for _ in range(20)))
    assert reader.reads == 1 and len(set(bodies)) == 1
    # an invalidation while a read is under way: that read's result is not trusted afterwards
    cache.invalidate("text", "overall")
    first = asyncio.ensure_future(read())
    await asyncio.sleep(0)  # it has asked Redis
    cache.invalidate("text", "overall")
    await first
    assert reader.reads == 2 and cache.recent("text", "overall", NO_FILTERS) is None
    await read()
    assert reader.reads == 3 and cache.recent("text", "overall", NO_FILTERS) is not None
