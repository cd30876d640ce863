"""The three services against a Redis Cluster (issue #17): PODIUM_REDIS_URL=redis+cluster://...
(3 masters + 3 replicas from deploy/redis/redis-cluster.sh; the session's single Kafka broker).
Votes of arenas on different slots count exactly; the board, history, matchups, registry and
client keys read back through the api and ingest; a small storm gets no 5xx but 503 "busy"; a
bad cluster URL stops a service at start with a clear message, an unreachable cluster leaves
/readyz at 503."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot

from services.api.board_cache import BoardChanges, RenderedBoards
from services.common.redis_client import connect
from shared.keys import KeyLayout
from tests.support.cluster import Cluster
from tests.support.counts import expected_counts, stored_counts, wait_for_counts
from tests.support.infra import ADMIN_TOKEN, DEV_API_KEY, ROOT, Infra, free_port, service_env
from tests.support.processes import ServiceProcess, running_stack
from tests.support.storm import api_storm, fire, ingest_storm, tally, unacceptable
from tests.support.votes import mixed_votes, post_all, post_batch
from tests.support.wait import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

ARENAS = ("text", "vision", "coding", "webdev")
ADMIN = {"authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture(scope="module")
def redis_cluster() -> Iterator[Cluster]:
    """A Redis Cluster of this module's own (no Kafka brokers of its own: the session's
    broker serves), started and stopped by deploy/redis/redis-cluster.sh."""
    cluster = Cluster.on_free_ports(ROOT / ".run" / f"pytest-redis-cluster-{free_port()}")

    def script(command: str) -> None:
        subprocess.run([str(ROOT / "deploy/redis/redis-cluster.sh"), command], env=cluster.env,
                       cwd=ROOT, check=True, capture_output=True, timeout=120)

    try:
        script("start")
        yield cluster
    finally:
        script("stop")
        subprocess.run(["rm", "-rf", str(cluster.run_dir)], check=False)


@pytest.fixture
async def cluster_client(redis_cluster: Cluster) -> AsyncIterator[RedisCluster]:
    client = connect(redis_cluster.redis_url)
    assert isinstance(client, RedisCluster)
    try:
        yield client
    finally:
        await client.aclose()


async def test_the_services_count_exactly_and_read_back_on_a_redis_cluster(
    infra: Infra, prefix: str, redis_cluster: Cluster, cluster_client: RedisCluster
) -> None:
    keys = KeyLayout(prefix)
    await cluster_client.initialize()
    owners = {cluster_client.get_node_from_key(keys.fence(a)).name for a in ARENAS}
    assert len({key_slot(keys.fence(a).encode()) for a in ARENAS}) == len(ARENAS)
    assert len(owners) >= 2, "the arenas' boards live on more than one master"

    env = service_env(infra, prefix, PODIUM_REDIS_URL=redis_cluster.redis_url,
                      PODIUM_RATING_BATCH_WITHIN_S="0.02", PODIUM_RATING_HISTORY_INTERVAL_S="1")
    async with running_stack(env, prefix) as stack:
        ingest, api = stack["ingest"].url, stack["api"].url
        votes = list(mixed_votes(2_000, seed=17, arenas=ARENAS))
        async with httpx.AsyncClient(base_url=ingest, timeout=30) as http:
            await post_all(http, votes, batch=250)
            await post_all(http, votes[:100])  # again: remembered by dedupe, not counted
            clients = await http.get("/v1/admin/clients", headers=ADMIN)
            assert clients.status_code == 200, clients.text
            assert [c["client"] for c in clients.json()] == ["dev"]
        want = expected_counts(votes)
        await wait_for_counts(cluster_client, keys, want, 90)

        async with httpx.AsyncClient(base_url=api, timeout=30) as http:
            async def boards_current() -> bool:
                listed = (await http.get("/v1/leaderboards")).json()["boards"]
                return {b["board"]: b["votes"] for b in listed} == {
                    board: counts.total() for board, counts in want.items()}

            await wait_until(boards_current, 60, "every board's standings at its vote count")
            for arena in ARENAS:
                board = await http.get(f"/v1/leaderboards/{arena}/overall")
                assert board.status_code == 200, board.text
                assert board.json()["votes"] == want[f"{arena}/overall"].total(), arena
            models = (await http.get("/v1/models")).json()
            assert len(models) >= 2
            model = board.json()["rows"][0]["model"]
            other = board.json()["rows"][1]["model"]

            async def history_and_matchups() -> bool:
                history = await http.get(f"/v1/models/{model}/history")
                matchups = await http.get(f"/v1/leaderboards/{ARENAS[-1]}/overall/matchups")
                return (history.status_code == 200 and bool(history.json())
                        and matchups.status_code == 200 and bool(matchups.json()))

            await wait_until(history_and_matchups, 60, "history and matchups written")
            matchup = await http.get(f"/v1/matchups/{model}/{other}")
            assert matchup.status_code == 200, matchup.text

        # a small storm on both services: nothing but 2xx/4xx and 503 with Retry-After
        shots = (ingest_storm(ingest, DEV_API_KEY, 100, seed=18)
                 + api_storm(api, [model, other], 100, arena=ARENAS[-1]))
        outcomes = await fire(shots)
        assert not unacceptable(outcomes), (tally(outcomes), unacceptable(outcomes)[:5])
        async with httpx.AsyncClient(timeout=10) as http:
            for base in (ingest, api, stack["rating"].url):
                assert (await http.get(f"{base}/readyz")).status_code == 200, base


@pytest.mark.parametrize(("url", "says"), [
    ("redis+cluster:///0", "names no node"),
    ("redis+cluster://127.0.0.1:{cluster}/1", "only db 0"),
    ("redis+cluster://127.0.0.1:{single}/0", "is not a Redis Cluster"),
])
@pytest.mark.parametrize("name", ["ingest", "api", "rating"])
async def test_a_bad_cluster_url_stops_the_service_with_a_clear_message(
    infra: Infra, prefix: str, redis_cluster: Cluster, url: str, says: str, name: str
) -> None:
    single = infra.redis_url.rsplit(":", 1)[1].split("/")[0]
    env = service_env(infra, prefix, PODIUM_REDIS_URL=url.format(
        cluster=redis_cluster.redis_ports[0], single=single))
    exited = subprocess.run([sys.executable, "-m", f"services.{name}"], cwd=ROOT,
                            env={**os.environ, **env}, capture_output=True, text=True,
                            timeout=90, check=False)
    assert exited.returncode != 0, exited.stderr[-2000:]
    assert says in exited.stderr + exited.stdout, exited.stderr[-2000:]


async def test_an_unreachable_cluster_is_reported_and_readiness_says_503(
    infra: Infra, prefix: str
) -> None:
    nowhere = f"redis+cluster://127.0.0.1:{free_port()},127.0.0.1:{free_port()}/0"
    env = service_env(infra, prefix, PODIUM_REDIS_URL=nowhere)
    del env["PODIUM_DEV_API_KEY"]  # registering it needs Redis: ingest would stop at start
    for name in ("api", "ingest"):
        service = await ServiceProcess(name, env, log_name=f"{name}-{prefix}").start("/healthz")
        try:
            async with httpx.AsyncClient(base_url=service.url, timeout=10) as http:
                assert (await http.get("/readyz")).status_code == 503
        finally:
            assert service.stop() == 0
        assert "Redis Cluster unreachable at start-up" in service.log_path.read_text()


class HeardChanges(RenderedBoards):
    """The api's board cache, noting which boards it was told changed."""

    def __init__(self) -> None:
        super().__init__(fresh_s=1.0, recheck_s=1.0)
        self.invalidated: list[tuple[str, str]] = []
        self.subscribed = 0

    def invalidate(self, arena: str, view: str) -> None:
        self.invalidated.append((arena, view))
        super().invalidate(arena, view)

    def invalidate_all(self) -> None:
        self.subscribed += 1
        super().invalidate_all()


async def test_the_api_hears_board_changes_published_through_any_master(
    prefix: str, cluster_client: RedisCluster
) -> None:
    """The api's subscriber on the cluster client (redis-py's ClusterPubSub: one node) hears a
    change published on each master, as a cluster forwards every PUBLISH to every node."""
    channel = KeyLayout(prefix).board_changes()
    cache = HeardChanges()
    listener = asyncio.create_task(BoardChanges(cluster_client, channel, cache).run())
    try:
        await wait_until(lambda: _true(cache.subscribed > 0), 20, "subscribed")
        await cluster_client.initialize()
        masters = cluster_client.get_primaries()
        assert len(masters) == 3
        for n, master in enumerate(masters):
            await cluster_client.execute_command("PUBLISH", channel, f"arena-{n}/overall",
                                                 target_nodes=master)
        want = [(f"arena-{n}", "overall") for n in range(len(masters))]
        await wait_until(lambda: _true(cache.invalidated == want), 20,
                         f"changes heard (heard {cache.invalidated})")
    finally:
        listener.cancel()
        await asyncio.gather(listener, return_exceptions=True)


async def _true(value: bool) -> bool:
    return value


async def test_a_killed_master_fails_over_and_every_accepted_vote_counts_once(
    infra: Infra, prefix: str, redis_cluster: Cluster
) -> None:
    """SIGKILL the master holding an arena's boards mid-stream: its replica is promoted, the
    services follow (re-read slots, retried commands), and every vote answered 202 (a client
    retrying 503s and broken connections with the same ids) is counted exactly once."""
    keys = KeyLayout(prefix)
    client = connect(redis_cluster.redis_url, retries=5)
    assert isinstance(client, RedisCluster)
    env = service_env(infra, prefix, PODIUM_REDIS_URL=redis_cluster.redis_url,
                      PODIUM_RATING_BATCH_WITHIN_S="0.02")
    killed = 0
    try:
        await client.initialize()
        port = client.get_node_from_key(keys.fence(ARENAS[0])).port
        node = redis_cluster.redis_ports.index(int(port)) + 1
        votes = list(mixed_votes(1_200, seed=19, arenas=ARENAS))
        async with running_stack(env, prefix) as stack:
            async with httpx.AsyncClient(base_url=stack["ingest"].url, timeout=30) as http:
                await post_all(http, votes[:400], batch=100)
                redis_cluster.kill_redis_node(node)
                killed = node
                for start in range(400, len(votes), 100):
                    await post_until_accepted(http, votes[start:start + 100])
            want = expected_counts(votes)

            async def counted() -> bool:  # a read may fail until the replica is promoted
                return await stored_counts(client, keys) == want

            await wait_until(counted, 120, "every accepted vote counted once", interval=0.25)
            assert await stored_counts(client, keys) == want
            async with httpx.AsyncClient(timeout=10) as http:
                for service in stack.values():
                    await wait_until(lambda s=service: _ok(http, f"{s.url}/readyz"), 60,
                                     f"{service.name} ready again")
    finally:
        if killed:
            redis_cluster.restart_redis_node(killed)
        await client.aclose()


async def post_until_accepted(http: httpx.AsyncClient, votes: list[dict[str, Any]]) -> None:
    """As a client does: the same votes again on 503 or a broken connection, until 202."""
    async def accepted() -> bool:
        try:
            r = await post_batch(http, votes)
        except httpx.TransportError:
            return False
        assert r.status_code in (202, 503), r.text
        return r.status_code == 202

    await wait_until(accepted, 60, "a batch accepted after the failover", interval=0.2)


async def _ok(http: httpx.AsyncClient, url: str) -> bool:
    return (await http.get(url)).status_code == 200
