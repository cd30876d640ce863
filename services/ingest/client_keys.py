"""Who may write to ingest: registered clients (API keys stored as sha256 digests in Redis),
optionally HMAC-signed requests with a time window and replay rejection; the admin key.

A client presents its key as ``X-API-Key`` or ``Authorization: Bearer``. A signed request adds
``X-Podium-Timestamp`` (unix seconds) and ``X-Podium-Signature``: the hex HMAC-SHA256, keyed by
the sha256 digest of the API key, of ``"{timestamp}\\n{METHOD}\\n{target}\\n"`` followed by
the body, where ``target`` is the path and, when the request has one, ``?`` and the query string
as sent. A signed request may name its key by ``X-Podium-Key-Id`` instead of sending the key.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field

from services.common.records import Place, RecordStore, RecordWriter, record_key
from services.common.redis_client import RedisClient
from shared.events import OpaqueId
from shared.keys import KeyLayout, text
from shared.settings import IngestSettings

log = logging.getLogger(__name__)

KEY_HEADER = "X-API-Key"
KEY_ID_HEADER = "X-Podium-Key-Id"
TIMESTAMP_HEADER = "X-Podium-Timestamp"
SIGNATURE_HEADER = "X-Podium-Signature"
DEV_CLIENT = "dev"


def key_digest(api_key: str) -> str:
    """The stored form of a key: sha256, hex. Keys are 256-bit random, so a fast hash suffices."""
    return hashlib.sha256(api_key.encode()).hexdigest()


def key_id(digest: str) -> str:
    """A key's public id: the first 16 hex digits of its digest."""
    return digest[:16]


def new_api_key() -> str:
    return "pdm_" + secrets.token_urlsafe(32)


def signing_payload(timestamp: str, method: str, path: str, body: bytes, query: str = ""
                    ) -> bytes:
    """What is signed: timestamp, method, the path with its query string (``path?query``, just
    the path when there is none: a query altered in transit fails the signature), the body."""
    target = f"{path}?{query}" if query else path
    return f"{timestamp}\n{method.upper()}\n{target}\n".encode() + body


def sign(api_key: str, timestamp: str, method: str, path: str, body: bytes, query: str = ""
         ) -> str:
    """The signature a client sends (used by tests and client libraries): ``query`` is the
    request's query string as sent, without the ``?``."""
    secret = bytes.fromhex(key_digest(api_key))
    payload = signing_payload(timestamp, method, path, body, query)
    return hmac.new(secret, payload, "sha256").hexdigest()


class ClientRecord(BaseModel):
    """A registered ingest client as stored (the key itself is never stored)."""

    key_id: str
    client: OpaqueId
    digest: str
    require_signature: bool = False
    created_at: datetime


class NewClient(BaseModel):
    client: OpaqueId = Field(description="Name of the client, e.g. the arena frontend.")
    require_signature: bool = Field(default=False, description="Refuse its unsigned requests.")


class CreatedClient(BaseModel):
    key_id: str
    client: str
    api_key: str = Field(description="Shown once; only its sha256 is stored.")
    require_signature: bool


class ClientInfo(BaseModel):
    key_id: str
    client: str
    require_signature: bool
    created_at: datetime


class RegisteredKeys:
    """This process's copy of the registered keys (key id -> digest), so that a request with a
    key nobody registered is refused without a Redis connection: a storm of bogus keys must not
    take the connections that real requests need.

    A key found here is still checked against Redis (a revocation anywhere takes effect at
    once). A key not found here is refused while the copy is younger than ``max_age_s``; an
    older copy is reloaded first, one HGETALL shared by every request waiting for it. So a key
    registered by another ingest instance may be refused for up to ``max_age_s`` (one
    registered here is added at once)."""

    def __init__(self, client: RedisClient, keys: KeyLayout, max_age_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._redis = client
        self._key = keys.clients()
        self._max_age_s = max_age_s
        self._clock = clock
        self._digests: dict[str, str] = {}
        self._loaded_at = float("-inf")
        self._loading: asyncio.Future[None] | None = None

    async def admits(self, kid: str, digest: str | None = None) -> bool:
        """Whether key id ``kid`` (with ``digest``, when the key itself was sent) may be a
        registered key: False means surely not (as of at most ``max_age_s`` ago)."""
        if self._matches(kid, digest):
            return True
        if self._clock() - self._loaded_at < self._max_age_s:
            return False
        await self._reload()
        return self._matches(kid, digest)

    def _matches(self, kid: str, digest: str | None) -> bool:
        known = self._digests.get(kid)
        return known is not None and (digest is None or hmac.compare_digest(known, digest))

    async def _reload(self) -> None:
        if self._loading is None:
            self._loading = asyncio.ensure_future(self._load())
        loading = self._loading
        try:
            await asyncio.shield(loading)
        finally:
            if self._loading is loading and loading.done():
                self._loading = None

    async def _load(self) -> None:
        started = self._clock()
        stored = await self._redis.hgetall(self._key)
        self._digests = {text(kid): ClientRecord.model_validate_json(raw).digest
                         for kid, raw in stored.items()}
        self._loaded_at = started

    def note(self, record: ClientRecord) -> None:
        self._digests[record.key_id] = record.digest

    def drop(self, kid: str) -> None:
        self._digests.pop(kid, None)


class ClientKeys:
    """The client-key store in Redis (``{p}:{ingest}:clients``: key id -> ClientRecord JSON),
    and this process's copy of which keys exist (``registered``). With a ``RecordWriter``, every
    write goes to the clients topic first (its system of record: services/common/records.py),
    then to Redis with the record's offset (``{p}:{ingest}:clients-offsets``)."""

    def __init__(self, client: RedisClient, keys: KeyLayout,
                 refresh_s: float = 1.0, records: RecordWriter | None = None,
                 topic: str = "") -> None:
        self._redis = client
        self._keys = keys
        self._records = records
        self._topic = topic
        self._store = RecordStore(client)
        self.registered = RegisteredKeys(client, keys, refresh_s)

    def place(self, kid: str) -> Place:
        return Place(self._keys.clients(), kid, self._keys.client_offsets(), kid)

    async def _write(self, kid: str, value: str | None) -> bool:
        """The record (``None``: a revocation) to the clients topic, then to Redis; whether
        Redis changed (without a writer: Redis alone)."""
        if self._records is None:
            if value is None:
                return bool(await self._redis.hdel(self._keys.clients(), kid))
            await self._redis.hset(self._keys.clients(), kid, value)
            return True
        offset = await self._records.write(self._topic, kid,
                                           None if value is None else value.encode())
        return await self._store.put(self.place(kid), offset, value)

    async def apply_records(self, records: Sequence[Any]) -> None:
        """Replay: write consumer records of the clients topic (each only if newer)."""
        for rec in records:
            await self._store.put(self.place(record_key(rec)), rec.offset, rec.value)

    async def adopt_legacy(self) -> int:
        """Move the keys of the hash used before ingest's keys shared one hash tag
        (``KeyLayout.legacy_clients``) into the current one, keeping a key registered since;
        returns how many moved. Idempotent: the old hash is deleted once copied."""
        old = await self._redis.hgetall(self._keys.legacy_clients())
        if not old:
            return 0
        for kid, raw in old.items():
            await self._redis.hsetnx(self._keys.clients(), kid, raw)
        await self._redis.delete(self._keys.legacy_clients())
        log.info("client keys: %d moved to %s", len(old), self._keys.clients())
        return len(old)

    async def add(self, api_key: str, client: str, require_signature: bool = False) -> ClientRecord:
        digest = key_digest(api_key)
        record = ClientRecord(key_id=key_id(digest), client=client, digest=digest,
                              require_signature=require_signature, created_at=datetime.now(UTC))
        await self._write(record.key_id, record.model_dump_json())
        self.registered.note(record)
        return record

    async def recorded(self, kid: str) -> bool:
        """Whether the key's record in Redis came from the clients topic."""
        return bool(await self._redis.hexists(self._keys.client_offsets(), kid))

    async def record(self, record: ClientRecord) -> None:
        """Write a record that is in Redis alone to the clients topic (and Redis, its offset)."""
        await self._write(record.key_id, record.model_dump_json())

    async def add_directly(self, api_key: str, client: str) -> ClientRecord:
        """Register a key in Redis alone (the dev key at start: Kafka may be down)."""
        digest = key_digest(api_key)
        record = ClientRecord(key_id=key_id(digest), client=client, digest=digest,
                              created_at=datetime.now(UTC))
        await self._redis.hset(self._keys.clients(), record.key_id, record.model_dump_json())
        self.registered.note(record)
        return record

    async def get(self, kid: str) -> ClientRecord | None:
        raw = await self._redis.hget(self._keys.clients(), kid)
        return None if raw is None else ClientRecord.model_validate_json(raw)

    async def revoke(self, kid: str) -> bool:
        self.registered.drop(kid)
        if not await self._redis.hexists(self._keys.clients(), kid):
            return False
        await self._write(kid, None)
        return True

    async def all(self) -> list[ClientRecord]:
        raw = await self._redis.hgetall(self._keys.clients())
        return sorted((ClientRecord.model_validate_json(v) for v in raw.values()),
                      key=lambda r: r.created_at)


_api_key_header = APIKeyHeader(name=KEY_HEADER, auto_error=False,
                               description="A registered client key.")
_bearer = HTTPBearer(auto_error=False, description="A client key (same as X-API-Key).")


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, detail,
                         headers={"WWW-Authenticate": "Bearer"})


def writer_auth(
    settings: IngestSettings, now: Callable[[], float] = time.time
) -> Callable[..., Awaitable[str | None]]:
    """A FastAPI dependency: the authenticated client's name (None for an anonymous write when
    ``ingest_require_auth`` is off). Stores it as ``request.state.client`` for the limits."""
    window = settings.ingest_signature_window_s

    async def authenticate(
        request: Request,
        api_key: Annotated[str | None, Depends(_api_key_header)],
        bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> str | None:
        given = api_key or (bearer.credentials if bearer is not None else None)
        signature = request.headers.get(SIGNATURE_HEADER)
        named_id = request.headers.get(KEY_ID_HEADER)
        request.state.client = None
        if given is None and named_id is None:
            if settings.ingest_require_auth:
                raise _unauthorized(f"a client key is required ({KEY_HEADER} or bearer)")
            return None
        store: ClientKeys = request.app.state.client_keys
        if given is not None:
            digest = key_digest(given)
            if not await store.registered.admits(key_id(digest), digest):  # no Redis trip
                raise _unauthorized("unknown or revoked client key")
            record = await store.get(key_id(digest))
            if record is None or not hmac.compare_digest(record.digest, digest):
                raise _unauthorized("unknown or revoked client key")
        else:
            assert named_id is not None
            if not await store.registered.admits(named_id[:64]):
                raise _unauthorized("unknown or revoked key id")
            record = await store.get(named_id[:64])
            if record is None:
                raise _unauthorized("unknown or revoked key id")
            if signature is None:
                raise _unauthorized(f"{KEY_ID_HEADER} needs a signed request")
        if signature is not None:
            await _check_signature(request, record, signature, window, now())
        elif settings.ingest_require_signature or record.require_signature:
            raise _unauthorized(f"this client must sign its requests ({SIGNATURE_HEADER})")
        request.state.client = record.client
        return record.client

    return authenticate


async def _check_signature(
    request: Request, record: ClientRecord, signature: str, window: int, now: float
) -> None:
    stamp = request.headers.get(TIMESTAMP_HEADER, "")
    if not stamp.isdigit() or len(stamp) > 12:
        raise _unauthorized(f"{TIMESTAMP_HEADER} must be unix seconds")
    if abs(now - int(stamp)) > window:
        raise _unauthorized(f"{TIMESTAMP_HEADER} is outside the {window}s window")
    body = await request.body()
    query = request.scope.get("query_string", b"").decode("latin-1")
    payload = signing_payload(stamp, request.method, request.url.path, body, query)
    expected = hmac.new(bytes.fromhex(record.digest), payload, "sha256").hexdigest()
    if not hmac.compare_digest(expected, signature.strip().lower()):
        raise _unauthorized("bad request signature")
    client: RedisClient = request.app.state.redis
    keys: KeyLayout = request.app.state.keys
    # a replay of the same signed request within the window (2x: clocks may differ either way)
    fresh = await client.set(keys.replay(expected), b"1", nx=True, ex=2 * window)
    if not fresh:
        raise _unauthorized("replayed request (this signature was seen before)")


_admin_bearer = HTTPBearer(auto_error=False,
                           description="The admin key (PODIUM_INGEST_ADMIN_TOKEN)")


def admin_auth(settings: IngestSettings) -> Callable[..., None]:
    """A FastAPI dependency: the admin key as bearer token, compared in constant time."""

    def require_admin(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_admin_bearer)],
    ) -> None:
        token = settings.ingest_admin_token
        if token is None:
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                "admin endpoints are disabled: set PODIUM_INGEST_ADMIN_TOKEN",
            )
        given = credentials.credentials if credentials is not None else ""
        if not secrets.compare_digest(given.encode(), token.get_secret_value().encode()):
            raise _unauthorized("a valid admin bearer token is required")

    return require_admin


async def register_dev_key(store: ClientKeys, settings: IngestSettings,
                           durable: bool = False) -> None:
    """Register ``PODIUM_DEV_API_KEY`` (when set) as client ``dev``, so local runs keep working.
    At start (Kafka may be down) in Redis alone when Redis lacks it; ``durable`` (after the
    clients topic was replayed, Kafka answering) also in the clients topic, as it is in Redis,
    so that a wiped Redis gets the same record back."""
    if settings.dev_api_key is None:
        return
    api_key = settings.dev_api_key.get_secret_value()
    digest = key_digest(api_key)
    found = await store.get(key_id(digest))
    if found is not None and hmac.compare_digest(found.digest, digest):
        store.registered.note(found)
        if durable and not await store.recorded(found.key_id):
            await store.record(found)
        return
    record = await (store.add(api_key, DEV_CLIENT) if durable
                    else store.add_directly(api_key, DEV_CLIENT))
    log.info("development client key registered (key id %s)", record.key_id)
