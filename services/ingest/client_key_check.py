"""The client keys of a group of vote requests, checked together: one HMGET in the group's
lookup pipeline, each stored record parsed once, recent keys copied in process."""

from __future__ import annotations

import hmac
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from services.common.redis_client import RedisPipeline
from services.ingest.client_keys import ClientRecord, RegisteredKeys, key_digest, key_id
from services.ingest.submission import UNAUTHORIZED_HEADERS, Answer, refused
from shared.keys import KeyLayout
from shared.settings import IngestSettings


class ClientKeyCheck:
    """Checks the client keys of a group with one HMGET in the group's lookup pipeline (each
    stored record parsed once)."""

    def __init__(self, keys: KeyLayout, settings: IngestSettings,
                 registered: RegisteredKeys | None = None) -> None:
        self._key = keys.clients()
        self._settings = settings
        self._registered = registered
        self._parsed: dict[bytes | str, ClientRecord] = {}
        self._digests: dict[str, str] = {}  # client key -> its digest (looked up per request)
        # key digest -> (key id, stored record, record) of keys found valid: a later group
        # confirms the stored record unchanged inside its rate-limit call (one round trip)
        self._valid: dict[str, tuple[str, bytes | str, ClientRecord]] = {}

    def remembered(self, api_key: str) -> tuple[str, bytes | str, ClientRecord] | None:
        """The key's (key id, stored record, record) when it was last found valid."""
        return self._valid.get(self._digest(api_key))

    def forget(self, api_key: str) -> None:
        self._valid.pop(self._digest(api_key), None)

    async def may_be_registered(self, api_key: str) -> bool:
        """False for a key this process knows nobody registered (no Redis trip for it)."""
        if self._registered is None:
            return True
        digest = self._digest(api_key)
        return digest in self._valid or await self._registered.admits(key_id(digest), digest)

    def _digest(self, api_key: str) -> str:
        """``key_digest``, kept for the keys seen (a SHA-256 per request showed in profiles)."""
        digest = self._digests.get(api_key)
        if digest is None:
            if len(self._digests) > 10_000:
                self._digests.clear()
            digest = self._digests[api_key] = key_digest(api_key)
        return digest

    def queue(
        self, pipe: RedisPipeline, api_keys: Sequence[str]
    ) -> Callable[[Iterator[Any]], dict[str, ClientRecord | Answer]]:
        """Add the lookup of ``api_keys`` to a pipeline; returns what reads, from its replies,
        each distinct key -> its client record, or the 401 answer for it."""
        digests = {k: self._digest(k) for k in set(api_keys)}
        kids = sorted({key_id(d) for d in digests.values()})
        if kids:
            pipe.hmget(self._key, kids)

        def checked(replies: Iterator[Any]) -> dict[str, ClientRecord | Answer]:
            found = dict(zip(kids, next(replies), strict=True)) if kids else {}
            verdicts: dict[str, ClientRecord | Answer] = {}
            for api_key, digest in digests.items():
                kid = key_id(digest)
                verdict = verdicts[api_key] = self._verdict(found[kid], digest)
                if isinstance(verdict, ClientRecord):
                    if len(self._valid) > 10_000:
                        self._valid.clear()
                    self._valid[digest] = (kid, found[kid], verdict)
                else:
                    self._valid.pop(digest, None)
            return verdicts

        return checked

    def _verdict(self, stored: bytes | str | None, digest: str) -> ClientRecord | Answer:
        record = None if stored is None else self._record(stored)
        if record is None or not hmac.compare_digest(record.digest, digest):
            return refused(401, "unauthorized", "unknown or revoked client key",
                            UNAUTHORIZED_HEADERS)
        if self._settings.ingest_require_signature or record.require_signature:
            return refused(401, "unauthorized",
                            "this client must sign its requests (X-Podium-Signature)",
                            UNAUTHORIZED_HEADERS)
        return record

    def _record(self, stored: bytes | str) -> ClientRecord:
        record = self._parsed.get(stored)
        if record is None:
            if len(self._parsed) > 10_000:
                self._parsed.clear()
            record = self._parsed[stored] = ClientRecord.model_validate_json(stored)
        return record
