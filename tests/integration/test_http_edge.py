"""The HTTP edge of ingest and api as processes (uvicorn + httptools, the fast paths), over real
sockets (issue #16, findings 3, 7, 8, 9): limits that X-Forwarded-For cannot dodge, no Host in
redirects, request head and URL limits, a deadline for incomplete requests, a per-address cap on
rank-change streams, and clients that go away mid-body."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import httpx
import orjson
import pytest
import websockets

from tests.support.infra import DEV_API_KEY, Infra, service_env
from tests.support.metrics import scrape
from tests.support.processes import ServiceProcess
from tests.support.wait import wait_until

SECOND_ADDRESS = "127.0.0.2"  # loopback too: another client address on the same machine


def vote(i: int) -> dict[str, object]:
    return {"vote_id": f"v{i}", "arena": "text", "model_a": "a", "model_b": "b",
            "winner": "model_a"}


@contextlib.asynccontextmanager
async def service(name: str, infra: Infra, prefix: str, **env: str
                  ) -> AsyncIterator[ServiceProcess]:
    process = await ServiceProcess(name, service_env(infra, prefix, **env),
                                   log_name=f"{name}-{prefix}").start()
    try:
        yield process
    finally:
        assert process.stop() == 0, f"{name} shut down cleanly on SIGTERM"


async def exchange(port: int, data: bytes, *, close_after: bool = False,
                   within_s: float = 10.0, source: str = "127.0.0.1") -> bytes:
    """Send ``data`` on a new connection and read until the server closes it (within
    ``within_s``, else TimeoutError); ``close_after``: close our end right after sending."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
    try:
        writer.write(data)
        await writer.drain()
        if close_after:
            return b""
        return await asyncio.wait_for(reader.read(-1), within_s)
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


def status_of(response: bytes) -> int:
    assert response.startswith(b"HTTP/1.1 "), response[:200]
    return int(response[9:12])


# --- finding 3: X-Forwarded-For and Host are the client's to say, not to decide ---

async def test_a_rotating_x_forwarded_for_does_not_dodge_the_per_ip_limit(
    infra: Infra, prefix: str
) -> None:
    async with service("ingest", infra, prefix, PODIUM_INGEST_IP_BURST="5",
                       PODIUM_INGEST_IP_REQUESTS_PER_S="0.01") as ingest:
        async with httpx.AsyncClient(base_url=ingest.url, timeout=30) as client:
            codes = [(await client.post("/v1/votes", json=vote(i),
                                        headers={"X-Forwarded-For": f"10.0.{i}.1"})).status_code
                     for i in range(12)]
            assert codes.count(202) == 5 and codes.count(429) == 7, codes
            # the batch route (FastAPI, not the fast path) charges the same address
            r = await client.post("/v1/votes/batch", json=[vote(100)],
                                  headers={"X-Forwarded-For": "10.9.9.9"})
            assert r.status_code == 429 and "ip:127.0.0.1" in r.text, r.text

            r = await client.post("/v1/votes/", json=vote(200),
                                  headers={"Host": "evil.example"})
            assert r.status_code == 404 and "location" not in r.headers, r.headers


async def test_behind_a_trusted_proxy_each_forwarded_address_has_its_own_limit(
    infra: Infra, prefix: str
) -> None:
    async with service("ingest", infra, prefix, PODIUM_INGEST_IP_BURST="5",
                       PODIUM_INGEST_IP_REQUESTS_PER_S="0.01",
                       PODIUM_INGEST_TRUST_FORWARDED_FOR="true") as ingest:
        async with httpx.AsyncClient(base_url=ingest.url, timeout=30) as client:
            codes = [(await client.post("/v1/votes", json=vote(i),
                                        headers={"X-Forwarded-For": f"10.0.{i}.1"})).status_code
                     for i in range(12)]
            assert codes == [202] * 12
            for i in range(12, 18):
                r = await client.post("/v1/votes", json=vote(i),
                                      headers={"X-Forwarded-For": "203.0.113.7, 10.0.0.1"})
            assert r.status_code == 429 and "ip:203.0.113.7" in r.text, r.text


async def test_api_redirects_never_name_the_host_a_client_sent(
    infra: Infra, prefix: str
) -> None:
    async with service("api", infra, prefix) as api:
        async with httpx.AsyncClient(base_url=api.url, timeout=30) as client:
            for path in ("/v1/leaderboards/", "/healthz/", "/readyz/"):
                r = await client.get(path, headers={"Host": "evil.example"})
                assert r.status_code == 404, (path, r.status_code)
                assert "evil.example" not in str(r.headers), r.headers


# --- finding 8: slow and greedy clients ---

async def test_oversized_heads_and_urls_are_refused_at_once_and_do_not_slow_others(
    infra: Infra, prefix: str
) -> None:
    async with service("api", infra, prefix) as api:
        assert api.port is not None
        port = api.port
        healthz = b"GET /healthz HTTP/1.1\r\nHost: x\r\n"
        huge = b"x-filler: " + b"a" * (1024 * 1024) + b"\r\n"

        async with httpx.AsyncClient(base_url=api.url, timeout=30) as client:
            async def fast_healthz() -> float:
                started = time.perf_counter()
                assert (await client.get("/healthz")).status_code == 200
                return time.perf_counter() - started

            started = time.perf_counter()
            refused, *latencies = await asyncio.gather(
                exchange(port, healthz + huge + b"\r\n", within_s=5),
                *(fast_healthz() for _ in range(5)))
            assert status_of(refused) == 431, refused[:200]
            assert b"headers over 65536 bytes" in refused
            assert time.perf_counter() - started < 3
            assert max(latencies) < 0.5, latencies

            # a large head within the limit is served as before
            fine = await exchange(port, healthz + b"x-filler: " + b"a" * 32_000
                                  + b"\r\nconnection: close\r\n\r\n")
            assert status_of(fine) == 200

            long_path = b"/healthz?" + b"q" * 60_000
            r = await exchange(port, b"GET " + long_path + b" HTTP/1.1\r\nHost: x\r\n\r\n")
            assert status_of(r) == 414 and b"request target over 8192 bytes" in r
            for query_bytes in (60_000, 8_160):  # over the limit; over the handshake's line
                upgrade = (b"GET /v1/ws/rank-changes?" + b"q" * query_bytes
                           + b" HTTP/1.1\r\nHost: x\r\n"
                           b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
                           b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                           b"Sec-WebSocket-Version: 13\r\n")
                started = time.perf_counter()
                r = await exchange(port, upgrade + b"\r\n", within_s=5)
                assert status_of(r) == 414 and time.perf_counter() - started < 1, query_bytes
            started = time.perf_counter()  # a header line the handshake parser cannot take
            r = await exchange(port, upgrade.replace(b"q" * 8_160, b"q")
                               + b"x-filler: " + b"a" * 9_000 + b"\r\n\r\n", within_s=5)
            assert status_of(r) == 431 and time.perf_counter() - started < 1
            assert (await client.get("/healthz")).status_code == 200


async def test_requests_that_do_not_arrive_in_time_are_answered_408_and_closed(
    infra: Infra, prefix: str
) -> None:
    async with service("ingest", infra, prefix, PODIUM_HTTP_REQUEST_TIMEOUT_S="1") as ingest:
        assert ingest.port is not None
        port = ingest.port
        head = b"POST /v1/votes/batch HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n"
        fast_head = b"POST /v1/votes HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n"
        half_sent = [
            b"",  # connected, nothing sent
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nx-slow: ",  # the head, never finished
            head + b"content-length: 1000\r\n\r\n[{\"vote_id\": ",  # the body, never finished
            fast_head + b"content-length: 500\r\n\r\n{\"vote_id\": ",  # the same, fast path
        ] * 10
        started = time.perf_counter()
        answers = await asyncio.gather(*(exchange(port, data, within_s=10)
                                         for data in half_sent))
        assert time.perf_counter() - started < 8
        assert {status_of(answer) for answer in answers} == {408}, answers[:2]
        assert b"request not complete within 1 s" in answers[0]
        async with httpx.AsyncClient(base_url=ingest.url, timeout=30) as client:
            assert (await client.post("/v1/votes", json=vote(1))).status_code == 202
            assert (await client.post("/v1/votes/batch", json=[vote(2)])).status_code == 202
        log = ingest.log_path.read_text()
        assert "Traceback" not in log and "ClientDisconnect" not in log


async def test_one_address_cannot_hold_every_stream_slot(infra: Infra, prefix: str) -> None:
    async with service("api", infra, prefix, PODIUM_API_STREAM_MAX_PER_ADDRESS="2",
                       PODIUM_API_STREAM_MAX_CLIENTS="10") as api:
        path = "/v1/events/rank-changes"
        ws_url = api.url.replace("http://", "ws://") + "/v1/ws/rank-changes"
        second = httpx.AsyncHTTPTransport(local_address=SECOND_ADDRESS)
        async with (httpx.AsyncClient(base_url=api.url, timeout=30) as first_client,
                    httpx.AsyncClient(base_url=api.url, timeout=30,
                                      transport=second) as second_client,
                    contextlib.AsyncExitStack() as streams):
            held = []
            for _ in range(2):
                stream = await streams.enter_async_context(first_client.stream("GET", path))
                assert stream.status_code == 200
                held.append(stream)

            async with first_client.stream("GET", path,
                                           headers={"X-Forwarded-For": "10.1.2.3"}) as r:
                assert r.status_code == 429  # (an open stream here: the cap was dodged)
                assert r.headers["retry-after"] == "5"
                text = (await r.aread()).decode()
            assert "too many open streams from 127.0.0.1 (limit 2 per address)" in text
            with pytest.raises(websockets.InvalidStatus) as denied:
                async with websockets.connect(ws_url):
                    pass
            assert denied.value.response.status_code == 429
            assert b"limit 2 per address" in denied.value.response.body

            async with second_client.stream("GET", path) as other:
                assert other.status_code == 200  # another address is served
                async with websockets.connect(ws_url,
                                              local_addr=(SECOND_ADDRESS, 0)) as ws:
                    assert orjson.loads(await ws.recv())["type"] == "ready"

            await held[0].aclose()  # a slot of the first address is free again

            async def served() -> bool:
                async with first_client.stream("GET", path) as again:
                    return again.status_code == 200

            await wait_until(served, 10, "a stream from 127.0.0.1 after one closed")
        samples = await scrape(api.url)
        counted = 'podium_api_http_requests_total{method="%s",route="%s",status="429"}'
        assert samples[counted % ("GET", path)] >= 1  # (and any probe before the release)
        assert samples[counted % ("WS", "/v1/ws/rank-changes")] == 1


# --- finding 7: a client that goes away mid-body ---

async def test_a_client_gone_mid_body_is_counted_without_a_traceback(
    infra: Infra, prefix: str
) -> None:
    async with service("ingest", infra, prefix, PODIUM_INGEST_REQUIRE_AUTH="true") as ingest:
        assert ingest.port is not None
        key = f"x-api-key: {DEV_API_KEY}\r\n".encode()
        json_head = b"Host: x\r\ncontent-type: application/json\r\n" + key
        partial = [
            b"POST /v1/votes/batch HTTP/1.1\r\n" + json_head
            + b"content-length: 1000\r\n\r\n[" + orjson.dumps(vote(1)),
            b"POST /v1/votes HTTP/1.1\r\n" + json_head
            + b"content-length: 1000\r\n\r\n" + orjson.dumps(vote(2))[:40],
            b"POST /v1/votes/batch HTTP/1.1\r\n" + json_head
            + b"transfer-encoding: chunked\r\n\r\n10\r\n[{\"vote_id\":\"v3\"\r\n",
            # a body FastAPI reads and validates itself (the scores route)
            b"POST /v1/scores HTTP/1.1\r\n" + json_head
            + b"content-length: 1000\r\n\r\n{\"model\": \"a\"",
        ]
        for data in partial:
            await exchange(ingest.port, data, close_after=True)

        async def counted() -> dict[str, float] | None:
            samples = await scrape(ingest.url)
            gone = {k: v for k, v in samples.items()
                    if k.startswith("podium_ingest_http_requests_total") and 'status="499"' in k}
            return samples if sum(gone.values()) == 4 else None

        samples = await wait_until(counted, 10, "four requests counted with status 499")
        by_route = ('podium_ingest_http_requests_total{method="POST",route="%s",status="499"}')
        assert samples[by_route % "/v1/votes/batch"] == 1
        assert samples[by_route % "/v1/votes"] == 1
        assert samples[by_route % "/v1/scores"] == 1
        assert samples['podium_ingest_votes_rejected_total{reason="client_disconnected"}'] == 3
        assert samples.get("podium_ingest_votes_accepted_total", 0) == 0
        log = ingest.log_path.read_text()
        assert "Traceback" not in log and "ClientDisconnect" not in log, log[-2000:]
        assert log.count("went away before the body") == 4
