"""A vote request as the acceptor takes it (``Submission``) and the answer it gets (``Answer``),
with the pure rules for a 202's lists: the first copy of a vote_id counts."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from shared.events import Vote

UNAUTHORIZED_HEADERS = {"WWW-Authenticate": "Bearer"}


@dataclass(slots=True)
class Submission:
    """One request's votes and who sent them. ``api_key`` is a client key still to check (the
    fast path leaves that to the group); otherwise ``client`` is already authenticated."""

    votes: Sequence[Vote]
    ip: str
    client: str | None = None
    api_key: str | None = None
    request_id: str | None = None  # for the log lines about this request
    # writes the answer to the client, if it can now without waiting (False: it cannot, the
    # caller writes it once ``submit`` returns). The group calls it for a 202 right after
    # Kafka's ack, which saves the turn of the event loop that waking the request's own task
    # for it takes: every vote's latency.
    respond: Callable[[Answer], Awaitable[bool]] | None = None


@dataclass(slots=True)  # not frozen: one per request, and frozen's __init__ costs ~0.5 us more
class Answer:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)
    reason: str = ""  # why the votes were refused (metrics label), "" when accepted


def refused(status: int, reason: str, detail: Any, headers: dict[str, str] | None = None
            ) -> Answer:
    return Answer(status, {"detail": detail}, headers or {}, reason)


def first_copies(votes: Sequence[Vote]) -> Sequence[Vote]:
    """The votes of a request with each vote_id once: its first copy (the rule everywhere: the
    first copy of an id counts, in a request as across requests; later ones are duplicates)."""
    if len(votes) < 2:
        return votes
    seen: set[str] = set()
    firsts = []
    for v in votes:
        if v.vote_id not in seen:
            seen.add(v.vote_id)
            firsts.append(v)
    return votes if len(firsts) == len(votes) else firsts


def accepted_and_duplicates(sent: Sequence[Vote], published: Sequence[Vote]
                            ) -> tuple[list[str], list[str]]:
    """A 202's two lists: ``accepted``, each vote_id of the request once, in order; and
    ``duplicates``, one entry per copy that was not published: seen before (a retry) or repeated
    in the request after its first copy."""
    ids = [v.vote_id for v in sent]
    if len(published) == len(ids):  # every copy new, so no id repeated
        return ids, []
    new = {v.vote_id for v in published}
    accepted: list[str] = []
    duplicates: list[str] = []
    listed: set[str] = set()
    for vote_id in ids:
        if vote_id in listed:
            duplicates.append(vote_id)
            continue
        listed.add(vote_id)
        accepted.append(vote_id)
        if vote_id not in new:
            duplicates.append(vote_id)
    return accepted, duplicates


def unknown_models_detail(missing: Sequence[str]) -> list[dict[str, Any]]:
    """The 422 ``detail`` naming unregistered models."""
    return [{"loc": ["body"], "type": "unknown_model", "models": list(missing),
             "msg": f"unknown model(s) {', '.join(missing)}: register them first "
                    "(POST /v1/admin/models)"}]

