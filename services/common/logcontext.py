"""What a log line is about: the request id (HTTP services) and the vote or batch being handled.

Context variables, so concurrent requests and tasks each see their own; the JSON log formatter
(``services.common.runtime``) adds every one that is set to each record.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

request_id_var: ContextVar[str | None] = ContextVar("podium_request_id", default=None)
vote_id_var: ContextVar[str | None] = ContextVar("podium_vote_id", default=None)
batch_var: ContextVar[str | None] = ContextVar("podium_batch", default=None)


def current_context() -> dict[str, str]:
    """The context fields that are set, for a log record."""
    fields = {"request_id": request_id_var.get(), "vote_id": vote_id_var.get(),
              "batch": batch_var.get()}
    return {k: v for k, v in fields.items() if v is not None}


def bind_votes(vote_ids: list[str]) -> None:
    """Name the votes of the current request in its log lines: the id of a single vote, or
    ``first..last (n)`` for a batch. Lasts until the request's context ends."""
    if not vote_ids:
        return
    if len(vote_ids) == 1:
        vote_id_var.set(vote_ids[0])
    else:
        vote_id_var.set(f"{vote_ids[0]}..{vote_ids[-1]} ({len(vote_ids)})")


@contextmanager
def batch_context(description: str) -> Iterator[None]:
    """Name a consumed batch (e.g. ``podium.votes/0@120-180``) in the log lines written in it."""
    token = batch_var.set(description)
    try:
        yield
    finally:
        batch_var.reset(token)


@contextmanager
def request_context(request_id: str | None, vote_ids: list[str]) -> Iterator[None]:
    """Name a request and its votes in the log lines written in it, from code that runs outside
    the request's own context (e.g. ingest's group commit, which serves many requests)."""
    token = request_id_var.set(request_id)
    vote_token = vote_id_var.set(None)
    try:
        bind_votes(vote_ids)
        yield
    finally:
        vote_id_var.reset(vote_token)
        request_id_var.reset(token)
