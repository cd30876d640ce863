"""A small typed async client of Podium's HTTP services (httpx).

- ``post_votes`` sends votes (NDJSON batches) and retries with the same ``vote_id``s on 503,
  429, 502/504 and connection errors, with exponential backoff (ingest never counts a retried
  vote twice); a 422 raises ``VotesRejected`` with the server's field-level errors.
- ``rank_changes`` iterates rank changes over SSE and reconnects by itself, resuming with
  ``Last-Event-ID`` from the last event seen, so no change is missed or repeated.

    async with PodiumClient(ClientSettings()) as podium:
        await podium.post_votes([Vote(vote_id="v1", arena="text", model_a="a", model_b="b",
                                      winner="model_a")])
        async for event in podium.rank_changes(board="text/overall"):
            print(event.id, event.change.model, event.change.new_rank)
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal

import httpx
import orjson
from pydantic import BaseModel

from shared.events import ModelFields, ModelInfo, RankChange, SignificanceLevel, Vote
from shared.releases import ReleaseDiff, ReleaseSummary
from shared.settings import ClientSettings
from shared.sse import sse_events

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429, 502, 503, 504})
NDJSON = "application/x-ndjson"
# ingest's client authentication (docs/security.md)
KEY_HEADER = "X-API-Key"
KEY_ID_HEADER = "X-Podium-Key-Id"
TIMESTAMP_HEADER = "X-Podium-Timestamp"
SIGNATURE_HEADER = "X-Podium-Signature"


class PodiumError(Exception):
    """A request Podium answered with an error (``status``, ``detail`` from the body)."""

    def __init__(self, status: int, detail: Any) -> None:
        super().__init__(f"{status}: {detail}")
        self.status = status
        self.detail = detail


class VotesRejected(PodiumError):
    """422: invalid votes (``detail`` lists ``{loc, msg, type}`` by index) or unknown models
    (an item of type ``unknown_model`` whose ``models`` names them)."""

    def unknown_models(self) -> list[str]:
        items = self.detail if isinstance(self.detail, list) else []
        return sorted({m for item in items if isinstance(item, dict)
                       and item.get("type") == "unknown_model" for m in item.get("models", [])})


class PodiumUnavailable(Exception):
    """Still unavailable (503, connection refused, ...) after every retry."""


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff: ``base_s * 2**(n-1)`` before retry n, at most ``max_s``, at least
    the server's ``Retry-After``; ``jitter`` spreads it by up to that fraction."""

    attempts: int = 8
    base_s: float = 0.2
    max_s: float = 5.0
    jitter: float = 0.2

    def delay(self, retry: int, retry_after: float | None = None) -> float:
        wait: float = min(self.max_s, self.base_s * 2.0 ** (retry - 1))
        if retry_after is not None:
            wait = max(wait, min(retry_after, self.max_s))
        return wait * (1 + self.jitter * random.random())


class VoteReceipt(BaseModel):
    accepted: list[str]
    duplicates: list[str]


@dataclass(frozen=True)
class RankChangeEvent:
    id: str  # the Kafka position, ``partition:offset``: resume after it with Last-Event-ID
    change: RankChange


Sleep = Callable[[float], Awaitable[None]]


class PodiumClient:
    def __init__(
        self,
        settings: ClientSettings | None = None,
        *,
        retry: RetryPolicy | None = None,
        timeout_s: float = 60.0,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.settings = settings or ClientSettings()
        self.retry = retry or RetryPolicy()
        self._sleep = sleep
        self._http = httpx.AsyncClient(timeout=timeout_s, transport=transport)
        self._last_stamp = 0

    async def __aenter__(self) -> PodiumClient:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- writing (ingest) --------------------------------------------------------------------

    async def post_votes(self, votes: Sequence[Vote]) -> VoteReceipt:
        """Send ``votes`` as one batch (all or nothing); retried until acknowledged."""
        body = b"\n".join(v.model_dump_json(exclude_none=True).encode() for v in votes)
        response = await self._send_with_retries(
            "POST", f"{self.settings.ingest_url}/v1/votes/batch", content=body,
            headers={"content-type": NDJSON}, authenticate=True,
        )
        if response.status_code == 422:
            raise VotesRejected(422, _detail(response))
        _raise_for_status(response)
        return VoteReceipt.model_validate_json(response.content)

    async def post_vote(self, vote: Vote) -> VoteReceipt:
        return await self.post_votes([vote])

    async def register_model(self, info: ModelInfo) -> bool:
        """Register a model (admin token needed); False when the id is already registered."""
        token = self.settings.ingest_admin_token
        headers = {"authorization": f"Bearer {token.get_secret_value()}"} if token else {}
        response = await self._send_with_retries(
            "POST", f"{self.settings.ingest_url}/v1/admin/models",
            content=info.model_dump_json(exclude_none=True).encode(),
            headers={"content-type": "application/json", **headers},
        )
        if response.status_code == 409:
            return False
        _raise_for_status(response)
        return True

    async def update_model(self, model_id: str, fields: ModelFields) -> ModelInfo:
        """Change a registered model's facts or lifecycle (admin token needed): only the fields
        set on ``fields`` are sent. Raises PodiumError 404 when it is not registered."""
        token = self.settings.ingest_admin_token
        headers = {"authorization": f"Bearer {token.get_secret_value()}"} if token else {}
        response = await self._send_with_retries(
            "PATCH", f"{self.settings.ingest_url}/v1/admin/models/{model_id}",
            content=fields.model_dump_json(exclude_unset=True).encode(),
            headers={"content-type": "application/json", **headers},
        )
        _raise_for_status(response)
        return ModelInfo.model_validate_json(response.content)

    async def publish_release(self, board: str, release_id: str | None = None,
                              note: str | None = None) -> ReleaseSummary:
        """Publish a release of ``board`` (admin token needed); PodiumError 409 when the id
        exists (releases are immutable)."""
        token = self.settings.ingest_admin_token
        headers = {"authorization": f"Bearer {token.get_secret_value()}"} if token else {}
        body = {"board": board, "id": release_id, "note": note}
        response = await self._send_with_retries(
            "POST", f"{self.settings.ingest_url}/v1/admin/releases",
            content=orjson.dumps({k: v for k, v in body.items() if v is not None}),
            headers={"content-type": "application/json", **headers},
        )
        _raise_for_status(response)
        return ReleaseSummary.model_validate_json(response.content)

    # -- reading (api) -----------------------------------------------------------------------

    async def releases(self, board: str | None = None) -> list[ReleaseSummary]:
        """Published releases (of ``board``, when given), newest first."""
        response = await self._send_with_retries(
            "GET", f"{self.settings.api_url}/v1/releases",
            params={"board": board} if board else None)
        _raise_for_status(response)
        return [ReleaseSummary.model_validate(r) for r in response.json()["releases"]]

    async def release_diff(self, from_id: str, to_id: str) -> ReleaseDiff:
        """What changed on a board from one of its releases to another."""
        response = await self._send_with_retries(
            "GET", f"{self.settings.api_url}/v1/releases/{from_id}/diff/{to_id}")
        _raise_for_status(response)
        return ReleaseDiff.model_validate_json(response.content)

    async def list_models(self) -> list[ModelInfo]:
        response = await self._send_with_retries("GET", f"{self.settings.api_url}/v1/models")
        _raise_for_status(response)
        return [ModelInfo.model_validate(m) for m in response.json()]

    async def leaderboard(self, board: str, at: str | None = None) -> dict[str, Any]:
        """A board's standings; with ``at`` (a release id or an ISO time), as a release
        published them."""
        response = await self._send_with_retries(
            "GET", f"{self.settings.api_url}/v1/leaderboards/{board}",
            params={"at": at} if at else None)
        _raise_for_status(response)
        doc: dict[str, Any] = response.json()
        return doc

    async def export(self, board: str, fmt: Literal["json", "csv"] = "json") -> bytes:
        """A board in LMArena's published JSON shape, or CSV."""
        response = await self._send_with_retries(
            "GET", f"{self.settings.api_url}/v1/leaderboards/{board}/export",
            params={"format": fmt})
        _raise_for_status(response)
        return response.content

    async def rank_changes(
        self,
        *,
        board: str | None = None,
        model: str | None = None,
        organization: str | None = None,
        top: int | None = None,
        significance: SignificanceLevel | None = None,
        last_event_id: str | None = None,
        idle_timeout_s: float = 60.0,
    ) -> AsyncIterator[RankChangeEvent]:
        """Rank changes as they happen, forever. After a dropped connection (or
        ``idle_timeout_s`` without even a heartbeat) it reconnects with backoff and resumes
        after the last event seen; pass ``last_event_id`` to resume from an earlier session."""
        params = {k: v for k, v in {"board": board, "model": model,
                                    "organization": organization, "top": top,
                                    "significance": significance}.items()
                  if v is not None}
        url = f"{self.settings.api_url}/v1/events/rank-changes"
        retry = 0
        while True:
            headers = {"accept": "text/event-stream"}
            if last_event_id is not None:
                headers["last-event-id"] = last_event_id
            try:
                timeout = httpx.Timeout(10.0, read=idle_timeout_s)
                async with self._http.stream("GET", url, params=params, headers=headers,
                                             timeout=timeout) as response:
                    if response.status_code not in RETRY_STATUSES:
                        if response.status_code != 200:
                            await response.aread()
                        _raise_for_status(response)
                        async for event in sse_events(response.aiter_text()):
                            retry = 0
                            if event.id is not None:
                                last_event_id = event.id
                            if event.event == "rank-change" and event.id is not None:
                                yield RankChangeEvent(event.id,
                                                      RankChange.model_validate_json(event.data))
            except (httpx.TransportError, httpx.StreamError) as exc:
                log.info("rank-change stream interrupted (%r); resuming after %s",
                         exc, last_event_id)
            retry += 1
            await self._sleep(self.retry.delay(min(retry, 16)))

    # -- plumbing ----------------------------------------------------------------------------

    def _auth_headers(self, method: str, url: str, body: bytes) -> dict[str, str]:
        """The client key, or (when signing) key id, timestamp and HMAC signature. A signature
        is accepted once, so every attempt gets a timestamp of its own."""
        key = self.settings.client_api_key
        if key is None:
            return {}
        if not self.settings.client_sign_requests:
            return {KEY_HEADER: key.get_secret_value()}
        digest = hashlib.sha256(key.get_secret_value().encode()).hexdigest()
        stamp = max(int(time.time()), self._last_stamp + 1)
        self._last_stamp = stamp
        target = httpx.URL(url)  # the path and query string as sent (the server signs both)
        query = target.query.decode("latin-1")
        path = f"{target.path}?{query}" if query else target.path
        payload = f"{stamp}\n{method.upper()}\n{path}\n".encode() + body
        return {KEY_ID_HEADER: digest[:16], TIMESTAMP_HEADER: str(stamp),
                SIGNATURE_HEADER: hmac.new(bytes.fromhex(digest), payload, "sha256").hexdigest()}

    async def _send_with_retries(self, method: str, url: str, authenticate: bool = False,
                                 **kwargs: Any) -> httpx.Response:
        last: str = ""
        for attempt in range(1, self.retry.attempts + 1):
            retry_after: float | None = None
            if authenticate:
                auth = self._auth_headers(method, url, kwargs.get("content", b""))
                kwargs["headers"] = {**kwargs.get("headers", {}), **auth}
            try:
                response = await self._http.request(method, url, **kwargs)
            except httpx.TransportError as exc:
                last = repr(exc)
            else:
                if response.status_code not in RETRY_STATUSES:
                    return response
                last = f"{response.status_code} {response.text[:200]}"
                retry_after = _retry_after(response)
            if attempt < self.retry.attempts:
                wait = self.retry.delay(attempt, retry_after)
                log.info("%s %s: %s; retry %d in %.2fs", method, url, last, attempt, wait)
                await self._sleep(wait)
        raise PodiumUnavailable(f"{method} {url}: {last} after {self.retry.attempts} attempts")


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return float(response.headers["retry-after"])
    except (KeyError, ValueError):
        return None


def _detail(response: httpx.Response) -> Any:
    try:
        return orjson.loads(response.content).get("detail")
    except (orjson.JSONDecodeError, AttributeError):
        return response.text


def _raise_for_status(response: httpx.Response) -> None:
    if response.status_code >= 400:
        raise PodiumError(response.status_code, _detail(response))
