"""The client's retry logic (backoff schedule, what is retried, same body each time) on a fake
transport; the same logic against a real ingest is in tests/integration/test_client.py."""

from __future__ import annotations

import httpx
import pytest

from shared.client import PodiumClient, PodiumUnavailable, RetryPolicy, VotesRejected
from shared.events import Vote
from shared.settings import ClientSettings

VOTES = [Vote(vote_id=f"v{i}", arena="text", model_a="a", model_b="b", winner="model_a")
         for i in range(3)]


def test_backoff_doubles_up_to_the_cap_and_honours_retry_after() -> None:
    policy = RetryPolicy(base_s=0.1, max_s=1.0, jitter=0)
    assert [policy.delay(n) for n in range(1, 7)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    assert policy.delay(1, retry_after=0.5) == 0.5
    assert policy.delay(1, retry_after=60) == 1.0  # never longer than the cap
    jittered = RetryPolicy(base_s=0.1, max_s=1.0, jitter=0.5).delay(2)
    assert 0.2 <= jittered <= 0.3


def client_with(answers: list[int | Exception]) -> tuple[PodiumClient, list[bytes], list[float]]:
    bodies: list[bytes] = []
    sleeps: list[float] = []

    def handle(request: httpx.Request) -> httpx.Response:
        bodies.append(request.content)
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        if answer == 202:
            return httpx.Response(202, json={"accepted": [v.vote_id for v in VOTES],
                                             "duplicates": ["v0"]})
        if answer == 422:
            return httpx.Response(422, json={"detail": [
                {"loc": ["body"], "type": "unknown_model", "models": ["b", "a"], "msg": "?"}]})
        return httpx.Response(answer, headers={"retry-after": "1"}, json={"detail": "busy"})

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    client = PodiumClient(ClientSettings(ingest_url="http://ingest"),
                          retry=RetryPolicy(attempts=4, base_s=0.1, max_s=2.0, jitter=0),
                          transport=httpx.MockTransport(handle), sleep=sleep)
    return client, bodies, sleeps


async def test_unavailable_answers_are_retried_with_the_same_votes() -> None:
    client, bodies, sleeps = client_with(
        [503, httpx.ConnectError("refused"), 429, 202])
    async with client:
        receipt = await client.post_votes(VOTES)
    assert receipt.accepted == ["v0", "v1", "v2"] and receipt.duplicates == ["v0"]
    assert len(bodies) == 4 and len(set(bodies)) == 1  # the same vote ids every time
    assert sleeps == [1.0, 0.2, 1.0]  # Retry-After wins over a shorter backoff


async def test_giving_up_after_the_last_attempt() -> None:
    client, bodies, sleeps = client_with([503, 503, 503, 503])
    async with client:
        with pytest.raises(PodiumUnavailable, match="4 attempts"):
            await client.post_votes(VOTES)
    assert len(bodies) == 4 and len(sleeps) == 3


async def test_invalid_votes_are_not_retried() -> None:
    client, bodies, _ = client_with([422])
    async with client:
        with pytest.raises(VotesRejected) as caught:
            await client.post_votes(VOTES)
    assert caught.value.unknown_models() == ["a", "b"] and len(bodies) == 1


async def test_writes_carry_the_client_key_or_a_fresh_signature_per_attempt() -> None:
    from services.ingest.client_keys import key_digest, key_id, sign

    seen: list[httpx.Headers] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers)
        if len(seen) in (1, 3):
            return httpx.Response(503)
        return httpx.Response(202, json={"accepted": ["v0"], "duplicates": []})

    async def no_sleep(seconds: float) -> None:
        return None

    for signing in (False, True):
        seen.clear()
        settings = ClientSettings(ingest_url="http://ingest", client_api_key="pdm_k",
                                  client_sign_requests=signing)
        async with PodiumClient(settings, transport=httpx.MockTransport(handle),
                                sleep=no_sleep) as client:
            await client.post_votes(VOTES[:1])
        if not signing:
            assert all(h["x-api-key"] == "pdm_k" for h in seen)
            continue
        body = VOTES[0].model_dump_json(exclude_none=True).encode()
        stamps = [h["x-podium-timestamp"] for h in seen]
        assert len(set(stamps)) == 2  # a replayed signature would be refused
        for h in seen:
            assert "x-api-key" not in h and h["x-podium-key-id"] == key_id(key_digest("pdm_k"))
            assert h["x-podium-signature"] == sign("pdm_k", h["x-podium-timestamp"], "POST",
                                                   "/v1/votes/batch", body)


async def test_a_signature_covers_the_query_string_as_the_server_computes_it() -> None:
    from services.ingest.client_keys import sign

    settings = ClientSettings(ingest_url="http://ingest", client_api_key="pdm_k",
                              client_sign_requests=True)
    body = b"[]"
    async with PodiumClient(settings, transport=httpx.MockTransport(
            lambda _: httpx.Response(202))) as client:
        with_query = client._auth_headers("POST", "http://ingest/v1/votes/batch?a=1&b=x%20y",
                                          body)
        plain = client._auth_headers("POST", "http://ingest/v1/votes/batch", body)
    assert with_query["X-Podium-Signature"] == sign(
        "pdm_k", with_query["X-Podium-Timestamp"], "POST", "/v1/votes/batch", body, "a=1&b=x%20y")
    assert plain["X-Podium-Signature"] == sign("pdm_k", plain["X-Podium-Timestamp"], "POST",
                                               "/v1/votes/batch", body)
