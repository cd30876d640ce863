"""The one list of transient Redis errors (services/common/redis_client.py): every error a Redis
Cluster raises while a master fails over is in it, so the rating worker retries its batch and
ingest and api answer 503 with Retry-After; errors that retrying cannot fix are not."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI
from redis.exceptions import (
    AskError,
    BusyLoadingError,
    ClusterCrossSlotError,
    ClusterDownError,
    ClusterError,
    CrossSlotTransactionError,
    DataError,
    MasterDownError,
    MaxConnectionsError,
    MovedError,
    NoScriptError,
    RedisError,
    ResponseError,
    SlotNotCoveredError,
    TryAgainError,
    WatchError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from services.common.http import install_error_handlers
from services.common.redis_client import (
    REDIS_ERRORS,
    REDIS_RETRYABLE,
    REDIS_UNAVAILABLE,
    ClusterUnreachable,
    NotACluster,
)

TRANSIENT = [
    RedisConnectionError("Error 111 connecting to 127.0.0.1:6381. Connection refused."),
    RedisTimeoutError("Timeout reading from socket"),
    BusyLoadingError("Redis is loading the dataset in memory"),
    MaxConnectionsError("Too many connections"),
    ClusterUnreachable("Redis Cluster 127.0.0.1:6381: no seed answered"),
    ClusterDownError("The cluster is down"),
    MasterDownError("Link with MASTER is down and replica-serve-stale-data is set to 'no'."),
    TryAgainError("Multiple keys request during rehashing of slot"),
    MovedError("3300 127.0.0.1:6384"),
    AskError("3300 127.0.0.1:6384"),
    ClusterError("TTL exhausted."),
    SlotNotCoveredError('Slot "3300" is not covered by the cluster.'),
]
PERMANENT = [
    ResponseError("WRONGTYPE Operation against a key holding the wrong kind of value"),
    NoScriptError("No matching script"),
    DataError("Invalid input of type: 'NoneType'"),
    WatchError("Watched variable changed."),
    ClusterCrossSlotError("Keys in request don't hash to the same slot"),
    CrossSlotTransactionError("all keys must map to the same slot"),
    NotACluster("127.0.0.1:6380 is not a Redis Cluster"),
    ValueError("a bug"),
]


@pytest.mark.parametrize("error", TRANSIENT, ids=lambda e: type(e).__name__)
def test_every_failover_error_is_transient(error: Exception) -> None:
    assert isinstance(error, REDIS_UNAVAILABLE)
    assert isinstance(error, REDIS_RETRYABLE)
    assert isinstance(error, REDIS_ERRORS)


@pytest.mark.parametrize("error", PERMANENT, ids=lambda e: type(e).__name__)
def test_errors_a_retry_cannot_fix_are_not(error: Exception) -> None:
    assert not isinstance(error, REDIS_UNAVAILABLE)
    assert not isinstance(error, REDIS_RETRYABLE)


def test_the_fail_open_paths_see_every_redis_error() -> None:
    """The dedupe lookup and the rate limits fail open on any Redis error, the cluster's
    SlotNotCoveredError (not a RedisError) included."""
    assert not issubclass(SlotNotCoveredError, RedisError)
    for error in (*TRANSIENT, ResponseError("ERR"), NoScriptError("NOSCRIPT")):
        assert isinstance(error, REDIS_ERRORS)
    assert not isinstance(ValueError("a bug"), REDIS_ERRORS)


def test_the_worker_also_retries_bare_socket_errors() -> None:
    assert isinstance(ConnectionResetError(), REDIS_RETRYABLE)
    assert isinstance(TimeoutError(), REDIS_RETRYABLE)
    assert not isinstance(ConnectionResetError(), REDIS_UNAVAILABLE)  # not a 503 "Redis" reason


@pytest.mark.parametrize("error", TRANSIENT, ids=lambda e: type(e).__name__)
async def test_a_request_redis_cannot_serve_is_answered_503_with_retry_after(
    error: Exception,
) -> None:
    """ingest's and api's handlers (services/common/http.py): a failover is a 503, never a 500."""
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/board")
    async def board() -> None:
        raise error

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        response = await client.get("/board")
    assert response.status_code == 503, response.text
    assert "Retry-After" in response.headers
    assert "Redis is unavailable" in response.json()["detail"]
