"""The services' Redis connections pack commands with hiredis: the same bytes as redis-py."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from redis.asyncio.connection import BlockingConnectionPool, Connection
from redis.exceptions import DataError

from services.common.redis_client import (
    PackedConnection,
    PackedSSLConnection,
    PackedUnixConnection,
    connect,
    connect_for_requests,
)
from shared.settings import PodiumSettings

PYTHON = Connection()
PACKED = PackedConnection()


def python_bytes(*args: object) -> bytes:
    return b"".join(bytes(chunk) for chunk in PYTHON.pack_command(*args))


def packed_bytes(*args: object) -> bytes:
    return b"".join(PACKED.pack_command(*args))


ARG = st.one_of(st.text(), st.binary(), st.integers(-(2**63), 2**63 - 1),
                st.floats(allow_nan=False), st.binary().map(memoryview), st.binary().map(bytearray))


@given(st.sampled_from(["SET", "EVALSHA", b"MGET", "SCRIPT LOAD", b"CONFIG SET"]),
       st.lists(ARG, max_size=8))
def test_the_same_bytes_as_redis_py(command: str | bytes, args: list[object]) -> None:
    assert packed_bytes(command, *args) == python_bytes(command, *args)


def test_a_pipeline_packs_with_it_too() -> None:
    commands = [("SET", "k", 1.5), ("EXPIRE", "k", 10), ("MGET", "a", "b")]
    assert b"".join(PACKED.pack_commands(commands)) == b"".join(
        bytes(c) for c in PYTHON.pack_commands(commands))


def test_values_redis_py_refuses_are_refused() -> None:
    with pytest.raises(DataError):
        PACKED.pack_command("SET", "k", None)


async def test_connect_keeps_the_url_scheme() -> None:
    cases = {"redis://localhost:1/0": PackedConnection, "rediss://localhost:1/0":
             PackedSSLConnection, "unix:///tmp/none.sock": PackedUnixConnection}
    for url, kind in cases.items():
        client = connect(url)
        assert client.connection_pool.connection_class is kind
        await client.aclose()


async def test_the_request_client_waits_for_a_bounded_pool_and_retries_on_fresh_connections(
) -> None:
    settings = PodiumSettings(redis_url="redis://localhost:1/0", redis_max_connections=7,
                              redis_pool_timeout_s=0.5, redis_retries=4)
    client = connect_for_requests(settings)
    pool = client.connection_pool
    assert isinstance(pool, BlockingConnectionPool)
    assert (pool.max_connections, pool.timeout) == (7, 0.5)
    assert pool.connection_class is PackedConnection  # hiredis packing kept
    retry = pool.connection_kwargs["retry"]
    assert retry.get_retries() == 4
    await client.aclose()
