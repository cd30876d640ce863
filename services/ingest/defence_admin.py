"""Admin endpoints of ingest's defences: client keys (create, list, revoke) and the voter
quarantine (list with evidence, release). All behind the admin key."""

from __future__ import annotations

import logging
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Body, Depends, HTTPException, Path, Request, status
from pydantic import BaseModel, Field

from services.common.quarantine_records import QuarantineRecords
from services.common.records import RecordUnavailable
from services.common.redis_client import RedisClient
from services.ingest.client_keys import (
    ClientInfo,
    ClientKeys,
    CreatedClient,
    NewClient,
    admin_auth,
    new_api_key,
)
from services.ingest.publisher import PublishUnavailable, VotePublisher
from shared.events import decode_vote_record
from shared.keys import KeyLayout, text
from shared.settings import IngestSettings

log = logging.getLogger(__name__)

SlugPath = Annotated[str, Path(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$", examples=["text"])]
VoterPath = Annotated[str, Path(min_length=1, max_length=128, pattern=r"^[!-~]+$",
                                examples=["u-81f2"])]
KeyIdPath = Annotated[str, Path(pattern=r"^[0-9a-f]{16}$", examples=["3f1c9a7e5d2b4c1e"])]


class QuarantinedVoter(BaseModel):
    arena: str
    voter: str
    evidence: dict[str, Any] = Field(description="The sequential test's statistics at the flag.")
    votes_kept: int = Field(description="Quarantined votes kept (not counted).")


class Released(BaseModel):
    arena: str
    voter: str
    released: int = Field(description="Votes re-published to podium.votes, marked released.")


ADMIN_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "Missing or wrong admin key."},
    403: {"description": "Admin endpoints are disabled (no admin key configured)."},
}


def defence_admin_router(settings: IngestSettings) -> APIRouter:
    """``/v1/admin/clients`` and ``/v1/admin/quarantine``, behind the admin key."""
    router = APIRouter(prefix="/v1/admin", tags=["admin"],
                       dependencies=[Depends(admin_auth(settings))])
    add_client_key_routes(router)
    add_quarantine_routes(router, settings.keys)
    return router


def add_client_key_routes(router: APIRouter) -> None:
    """Create, list and revoke client keys."""
    errors = ADMIN_ERRORS

    def store(request: Request) -> ClientKeys:
        found: ClientKeys = request.app.state.client_keys
        return found

    @router.post("/clients", status_code=201, response_model=CreatedClient, responses=errors,
                 summary="Create an ingest client key (the key is shown once)")
    async def create_client(
        request: Request,
        new: Annotated[NewClient, Body(examples=[{"client": "arena-frontend"}])],
    ) -> CreatedClient:
        api_key = new_api_key()
        record = await store(request).add(api_key, new.client, new.require_signature)
        return CreatedClient(key_id=record.key_id, client=record.client, api_key=api_key,
                             require_signature=record.require_signature)

    @router.get("/clients", response_model=list[ClientInfo], responses=errors,
                summary="List client keys (ids and names, never the keys)")
    async def list_clients(request: Request) -> list[ClientInfo]:
        return [ClientInfo(key_id=r.key_id, client=r.client,
                           require_signature=r.require_signature, created_at=r.created_at)
                for r in await store(request).all()]

    @router.delete("/clients/{key_id}", status_code=204, responses={
        **errors, 404: {"description": "No such key."}}, summary="Revoke a client key")
    async def revoke_client(request: Request, key_id: KeyIdPath) -> None:
        if not await store(request).revoke(key_id):
            raise HTTPException(404, f"no client key {key_id!r}")


def add_quarantine_routes(router: APIRouter, keys: KeyLayout) -> None:
    """List the quarantined voters (with evidence); release one (its kept votes counted)."""
    errors = ADMIN_ERRORS

    @router.get("/quarantine", response_model=list[QuarantinedVoter], responses=errors,
                summary="Voters flagged by the rating worker's outlier test, with evidence")
    async def list_quarantine(request: Request) -> list[QuarantinedVoter]:
        client: RedisClient = request.app.state.redis
        out: list[QuarantinedVoter] = []
        for arena in sorted(text(a) for a in await client.smembers(keys.arenas())):
            flagged = await client.hgetall(keys.flagged(arena))
            for voter_raw, evidence in sorted(flagged.items()):
                voter = text(voter_raw)
                kept = await client.llen(keys.quarantine(arena, voter))
                out.append(QuarantinedVoter(arena=arena, voter=voter,
                                            evidence=orjson.loads(evidence), votes_kept=kept))
        return out

    @router.post("/quarantine/{arena}/{voter}/release", response_model=Released,
                 responses={**errors, 404: {"description": "The voter is not flagged."},
                            503: {"description": "Kafka did not acknowledge; retry."}},
                 summary="Unflag a voter and count their kept votes (re-published, once)")
    async def release(request: Request, arena: SlugPath, voter: VoterPath) -> Released:
        client: RedisClient = request.app.state.redis
        evidence = await client.hget(keys.flagged(arena), voter)
        if evidence is None:
            raise HTTPException(404, f"voter {voter!r} is not flagged in arena {arena!r}")
        decisions: QuarantineRecords = request.app.state.quarantine_records
        try:  # new votes count from now on
            await decisions.write(arena, voter, None)
        except RecordUnavailable as exc:
            raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE,
                                "Kafka did not acknowledge; retry the release") from exc
        await client.hdel(keys.voter_stats(arena), voter)
        publisher: VotePublisher = request.app.state.publisher
        released = 0
        while True:  # also votes the worker quarantined while this ran
            raw = await client.lrange(keys.quarantine(arena, voter), 0, 499)
            if not raw:
                break
            votes = [v.model_copy(update={"released": True})
                     for r in raw for v in decode_vote_record(r)]
            try:  # the ids first (a replay then excludes the originals), then the copies
                await decisions.write_released(arena, [v.vote_id for v in votes])
                await publisher.publish(votes)
            except (PublishUnavailable, RecordUnavailable) as exc:
                try:  # still quarantined
                    await decisions.write(arena, voter, evidence)
                except RecordUnavailable:
                    log.error("release of %s/%s failed half-way and its flag could not be "
                              "written back: its kept votes stay kept, new ones count", arena,
                              voter)
                raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE,
                                    "Kafka did not acknowledge; retry the release") from exc
            await client.ltrim(keys.quarantine(arena, voter), len(raw), -1)
            released += len(votes)
        return Released(arena=arena, voter=voter, released=released)
