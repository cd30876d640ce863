"""ingest's defences with real Redis: client keys, signatures, replay, admin keys, limits."""

from __future__ import annotations

import time

import orjson
import redis.asyncio as aioredis

from services.ingest.client_keys import KEY_ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, sign
from shared.keys import KeyLayout
from shared.settings import IngestSettings
from tests.support.infra import ADMIN_TOKEN, DEV_API_KEY, Infra
from tests.support.ingest_app import ingest_client, ingest_settings

ADMIN = {"authorization": f"Bearer {ADMIN_TOKEN}"}


def vote(i: int, **extra: object) -> dict[str, object]:
    return {"vote_id": f"v{i}", "arena": "text", "model_a": "a", "model_b": "b",
            "winner": "model_a", **extra}


def signed(key: str, body: bytes, path: str = "/v1/votes", stamp: int | None = None
           ) -> dict[str, str]:
    ts = str(int(time.time()) if stamp is None else stamp)
    return {"content-type": "application/json", TIMESTAMP_HEADER: ts,
            SIGNATURE_HEADER: sign(key, ts, "POST", path, body)}


async def test_writes_need_a_registered_key_and_a_valid_fresh_signature(
    infra: Infra, prefix: str, redis_client: aioredis.Redis
) -> None:
    settings = ingest_settings(infra, prefix)
    async with ingest_client(settings, redis_client) as (client, published):
        body = orjson.dumps(vote(1))
        json_ct = {"content-type": "application/json"}
        r = await client.post("/v1/votes", content=body, headers=json_ct)
        assert r.status_code == 401, "unauthenticated"
        r = await client.post("/v1/votes", content=body, headers={**json_ct, "X-API-Key": "nope"})
        assert r.status_code == 401, "wrong key"
        r = await client.post("/v1/votes", content=body,
                              headers={**json_ct, "authorization": "Bearer wrong"})
        assert r.status_code == 401, "wrong bearer key"
        r = await client.post("/v1/scores", json={"model": "a", "benchmark": "x", "score": 1,
                                                  "source": "s"})
        assert r.status_code == 401, "scores need a key too"
        assert published.votes == [] and published.scores == []

        r = await client.post("/v1/votes", content=body,
                              headers={**json_ct, "X-API-Key": DEV_API_KEY})
        assert r.status_code == 202, r.text
        r = await client.post("/v1/votes", content=orjson.dumps(vote(2)),
                              headers={**json_ct, "authorization": f"Bearer {DEV_API_KEY}"})
        assert r.status_code == 202, r.text

        # a client that must sign
        r = await client.post("/v1/admin/clients", json={"client": "arena", "require_signature":
                                                         True}, headers=ADMIN)
        assert r.status_code == 201, r.text
        key, kid = r.json()["api_key"], r.json()["key_id"]
        body = orjson.dumps(vote(3))
        r = await client.post("/v1/votes", content=body, headers={**json_ct, "X-API-Key": key})
        assert r.status_code == 401, "unsigned request of a signing client"
        bad = {**signed(key, body), "X-API-Key": key}
        bad[SIGNATURE_HEADER] = "0" * 64
        assert (await client.post("/v1/votes", content=body, headers=bad)).status_code == 401
        tampered = {**signed(key, body), "X-API-Key": key}
        r = await client.post("/v1/votes", content=orjson.dumps(vote(4)), headers=tampered)
        assert r.status_code == 401, "signature over another body"
        expired = {**signed(key, body, stamp=int(time.time()) - 301), "X-API-Key": key}
        assert (await client.post("/v1/votes", content=body, headers=expired)).status_code == 401
        future = {**signed(key, body, stamp=int(time.time()) + 301), "X-API-Key": key}
        assert (await client.post("/v1/votes", content=body, headers=future)).status_code == 401
        good = {**signed(key, body), KEY_ID_HEADER: kid}  # the key itself is not sent
        r = await client.post("/v1/votes", content=body, headers=good)
        assert r.status_code == 202, r.text
        r = await client.post("/v1/votes", content=body, headers=good)
        assert r.status_code == 401 and "replay" in r.text
        assert [v.vote_id for v in published.votes] == ["v1", "v2", "v3"]

        # revoked keys stop working; listing never shows keys
        listed = (await client.get("/v1/admin/clients", headers=ADMIN)).json()
        assert {c["client"] for c in listed} == {"dev", "arena"}
        assert all("api_key" not in c and "digest" not in c for c in listed)
        assert (await client.delete(f"/v1/admin/clients/{kid}", headers=ADMIN)).status_code == 204
        body = orjson.dumps(vote(5))
        r = await client.post("/v1/votes", content=body, headers={**signed(key, body),
                                                                  KEY_ID_HEADER: kid})
        assert r.status_code == 401
        stored = await redis_client.hgetall(KeyLayout(prefix).clients())
        assert key.encode() not in b"".join(stored.values()), "keys are stored hashed"

        # admin endpoints need the admin key, not a client key
        r = await client.get("/v1/admin/clients", headers={"authorization":
                                                           f"Bearer {DEV_API_KEY}"})
        assert r.status_code == 401
        assert (await client.get("/v1/admin/quarantine")).status_code == 401


async def test_rate_limits_answer_429_with_retry_after(
    infra: Infra, prefix: str, redis_client: aioredis.Redis
) -> None:
    settings = ingest_settings(infra, prefix, ingest_voter_burst=5, ingest_voter_votes_per_s=0.01,
                               ingest_ip_burst=50, ingest_ip_requests_per_s=0.01,
                               ingest_voter_daily_cap=8, ingest_require_auth=False)
    async with ingest_client(settings, redis_client) as (client, published):
        batch = [vote(i, voter="u1") for i in range(5)]
        assert (await client.post("/v1/votes/batch", json=batch)).status_code == 202
        r = await client.post("/v1/votes", json=vote(5, voter="u1"))
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1, r.text
        assert "voter:u1" in r.text
        # a refused batch is refused whole: nothing of it is charged or published
        r = await client.post("/v1/votes/batch", json=[vote(6, voter="u2"), vote(7, voter="u1")])
        assert r.status_code == 429
        assert (await client.post("/v1/votes", json=vote(8, voter="u2"))).status_code == 202
        assert [v.vote_id for v in published.votes] == [f"v{i}" for i in range(5)] + ["v8"]
        # a client's retry of accepted votes is not charged again
        assert (await client.post("/v1/votes/batch", json=batch)).status_code == 202

    settings = ingest_settings(infra, prefix + "d", ingest_voter_daily_cap=3,
                               ingest_require_auth=False)
    async with ingest_client(settings, redis_client) as (client, _):
        ok = await client.post("/v1/votes/batch", json=[vote(i, voter="u") for i in range(3)])
        assert ok.status_code == 202
        r = await client.post("/v1/votes", json=vote(3, voter="u"))
        assert r.status_code == 429 and "daily" in r.text
        assert 1 <= int(r.headers["retry-after"]) <= 86_400

    settings = ingest_settings(infra, prefix + "i", ingest_ip_burst=3,
                               ingest_ip_requests_per_s=0.01, ingest_require_auth=False)
    async with ingest_client(settings, redis_client) as (client, _):
        codes = [(await client.post("/v1/votes", json=vote(i))).status_code for i in range(4)]
        assert codes == [202, 202, 202, 429]


async def test_voter_state_refills_and_resets_at_midnight(
    prefix: str, redis_client: aioredis.Redis
) -> None:
    """A voter's token bucket and daily count share one hash field: the bucket refills with
    time, the count resets at midnight UTC, and a refused request charges neither."""
    from services.ingest.limits import DAY_S, LimitRequest, RateLimiter
    from shared.events import Vote
    from shared.keys import KeyLayout

    now = [DAY_S * 20_000 + DAY_S - 30.0]  # 30 s before midnight UTC
    settings = ingest_settings_for_limits(ingest_voter_burst=4, ingest_voter_votes_per_s=1.0,
                                          ingest_voter_daily_cap=8)
    limiter = RateLimiter(redis_client, KeyLayout(prefix), settings, clock=lambda: now[0])

    def req(n: int, start: int, voter: str = "u") -> LimitRequest:
        return LimitRequest("10.0.0.1", "c", [Vote.model_validate(vote(start + i, voter=voter))
                                              for i in range(n)])

    assert [v.allowed for v in await limiter.check_many([req(4, 0), req(1, 4)])] == [True, False]
    now[0] += 2.0  # two tokens back
    verdict = (await limiter.check_many([req(3, 10)]))[0]
    assert not verdict.allowed and verdict.limit == "voter:u" and verdict.retry_after_s == 1
    assert (await limiter.check_many([req(2, 10)]))[0].allowed  # 6 today
    now[0] += 10.0
    verdict = (await limiter.check_many([req(3, 20)]))[0]  # 9 > 8 today
    assert not verdict.allowed and verdict.limit == "voter-daily-cap:u"
    assert 1 <= verdict.retry_after_s <= 18
    assert (await limiter.check_many([req(1, 20, voter="w")]))[0].allowed  # another voter
    now[0] += 30.0  # past midnight: a new day
    assert (await limiter.check_many([req(4, 30)]))[0].allowed
    # the bucket carries over midnight (the count does not): drained just before midnight, a
    # voter is still limited just after it
    now[0] = DAY_S * 20_002 - 1.0
    assert (await limiter.check_many([req(4, 40, voter="m")]))[0].allowed
    now[0] += 2.0
    verdict = (await limiter.check_many([req(3, 50, voter="m")]))[0]
    assert not verdict.allowed and verdict.limit == "voter:m"
    assert (await limiter.check_many([req(2, 50, voter="m")]))[0].allowed  # 2 tokens back


def ingest_settings_for_limits(**limits: object) -> IngestSettings:
    return IngestSettings(redis_url="redis://unused", ingest_require_auth=False,
                          **limits)  # type: ignore[arg-type]


async def test_duplicate_prompts_past_the_cap_are_kept_but_excluded(
    infra: Infra, prefix: str, redis_client: aioredis.Redis
) -> None:
    settings = ingest_settings(infra, prefix, ingest_prompt_hash_cap=2, ingest_require_auth=False)
    digest = "ab" * 32
    async with ingest_client(settings, redis_client) as (client, published):
        batch = [vote(i, prompt_hash=digest, excluded="duplicate_prompt" if i == 0 else None)
                 for i in range(3)]
        assert (await client.post("/v1/votes/batch", json=batch)).status_code == 202
        r = await client.post("/v1/votes", json=vote(9, prompt_hash=digest, released=True))
        assert r.status_code == 202
        assert [v.excluded for v in published.votes] == [None, None, "duplicate_prompt",
                                                         "duplicate_prompt"]
        assert not any(v.released for v in published.votes), "server-set fields are reset"
