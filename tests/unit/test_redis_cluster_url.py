"""The ``redis+cluster://`` URL form and the cluster client ``connect`` returns for it."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from services.common.redis_client import (
    PackedConnection,
    PackedRedisCluster,
    connect,
    is_cluster_url,
    parse_cluster_url,
)


def test_every_node_is_a_seed() -> None:
    parsed = parse_cluster_url("redis+cluster://127.0.0.1:7001,127.0.0.1:7002, localhost:7003/0")
    assert parsed.seeds == (("127.0.0.1", 7001), ("127.0.0.1", 7002), ("localhost", 7003))


def test_credentials_and_options_reach_the_connections() -> None:
    parsed = parse_cluster_url(
        "redis+cluster://user:p%40ss@10.0.0.1:7001,10.0.0.2:7001?socket_timeout=3")
    assert parsed.seeds == (("10.0.0.1", 7001), ("10.0.0.2", 7001))
    assert parsed.options["username"] == "user"
    assert parsed.options["password"] == "p@ss"
    assert parsed.options["socket_timeout"] == 3.0
    assert "host" not in parsed.options and "db" not in parsed.options


def test_tls_form() -> None:
    assert parse_cluster_url("rediss+cluster://h:1/0").options["ssl"] is True


@pytest.mark.parametrize(("url", "says"), [
    ("redis+cluster:///0", "names no node"),
    ("redis+cluster://,/0", "names no node"),
    ("redis+cluster://127.0.0.1/0", "must be host:port"),
    ("redis+cluster://127.0.0.1:http/0", "must be host:port"),
    ("redis+cluster://127.0.0.1:0/0", "must be host:port"),
    ("redis+cluster://127.0.0.1:7001/1", "only db 0"),
    ("redis+cluster://127.0.0.1:7001/x", "only db 0"),
])
def test_a_bad_cluster_url_says_what_is_wrong(url: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        parse_cluster_url(url)
    with pytest.raises(ValueError, match=says):
        connect(url)


def test_the_scheme_chooses_the_client() -> None:
    assert is_cluster_url("REDIS+CLUSTER://h:1")
    assert not is_cluster_url("redis://h:1/0")
    assert type(connect("redis://127.0.0.1:1/0")) is aioredis.Redis


async def test_cluster_client_packs_by_hiredis_bounded_and_retrying() -> None:
    """Seed nodes and the nodes discovered later (built from the shared kwargs) pack by hiredis;
    connections per node are bounded; the retries are the ones asked for."""
    client = connect("redis+cluster://127.0.0.1:7001,127.0.0.1:7002/0", max_connections=7,
                     retries=4)
    assert isinstance(client, PackedRedisCluster)
    assert [n.connection_class for n in client.startup_nodes] == [PackedConnection] * 2
    assert client.nodes_manager.connection_kwargs["connection_class"] is PackedConnection
    assert {n.max_connections for n in client.startup_nodes} == {7}
    assert client.retry.get_retries() == 4
    await client.aclose()
