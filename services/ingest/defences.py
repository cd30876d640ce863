"""Wiring of ingest's defences (docs/security.md): client auth, CORS, rate limits, the
security admin endpoints. ``create_app`` calls these few functions and nothing else of it."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from fastapi import Depends, FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.params import Depends as DependsParam

from services.common.http import OrjsonResponse
from services.common.records import RecordWriter
from services.common.redis_client import REDIS_UNAVAILABLE, RedisClient
from services.ingest.client_keys import (
    KEY_HEADER,
    KEY_ID_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    ClientKeys,
    register_dev_key,
    writer_auth,
)
from services.ingest.defence_admin import defence_admin_router
from services.ingest.limits import RateLimiter, client_ip
from shared.events import Vote
from shared.settings import IngestSettings

log = logging.getLogger(__name__)

WRITE_RESPONSES: dict[int | str, dict[str, str]] = {
    401: {"description": "Missing, unknown or revoked client key; bad, expired or replayed "
          "signature."},
    429: {"description": "A rate limit or the voter's daily cap was hit; see Retry-After."},
}


def install(app: FastAPI, settings: IngestSettings) -> list[DependsParam]:
    """CORS and the security admin endpoints; returns the dependencies of write endpoints."""
    if settings.ingest_cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.ingest_cors_origins,
            allow_methods=["GET", "POST", "PATCH", "DELETE"],
            allow_headers=["content-type", "authorization", KEY_HEADER, KEY_ID_HEADER,
                           TIMESTAMP_HEADER, SIGNATURE_HEADER],
            max_age=600,
        )
    app.include_router(defence_admin_router(settings))
    return [Depends(writer_auth(settings))]


async def start(app: FastAPI, client: RedisClient, settings: IngestSettings,
                records: RecordWriter | None = None) -> None:
    """Lifespan part: the client-key store (with the dev key; its records written by
    ``records`` to the clients topic) and the rate limiter."""
    app.state.redis = client
    app.state.keys = settings.keys
    app.state.client_keys = ClientKeys(client, settings.keys,
                                       settings.ingest_client_keys_refresh_s, records,
                                       settings.topics.clients)
    app.state.limiter = RateLimiter(client, settings.keys, settings)
    try:
        await app.state.client_keys.adopt_legacy()
    except REDIS_UNAVAILABLE as exc:  # at the next start, then
        log.warning("client keys: the old hash not checked, Redis unavailable: %s", exc)
    await register_dev_key(app.state.client_keys, settings)


async def limit(
    request: Request, settings: IngestSettings, votes: Sequence[Vote]
) -> OrjsonResponse | list[Vote]:
    """The votes to publish (duplicate prompts marked excluded), or a 429 response."""
    limiter: RateLimiter = request.app.state.limiter
    verdict = await limiter.check(
        client_ip(request, settings.ingest_trust_forwarded_for),
        getattr(request.state, "client", None),
        votes,
    )
    if verdict.never:
        return OrjsonResponse({"detail": [{"loc": ["body"], "type": "over_limit",
                                           "limit": verdict.limit, "msg": verdict.never}]},
                              status_code=422)
    if not verdict.allowed:
        return OrjsonResponse(
            {"detail": f"rate limit exceeded ({verdict.limit}); retry after "
             f"{verdict.retry_after_s}s"},
            status_code=429,
            headers={"Retry-After": str(verdict.retry_after_s)},
        )
    return list(verdict.votes)
