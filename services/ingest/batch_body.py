"""Request bodies of ingest's vote routes: the media types taken (415 otherwise) and a batch
body (JSON array or NDJSON) decoded into votes, all or nothing, errors by item index."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import HTTPException, Request, status
from fastapi.params import Depends as DependsParam
from pydantic import TypeAdapter, ValidationError

from services.common.http import error_items
from shared.events import Vote

JSON = "application/json"
NDJSON = "application/x-ndjson"
_votes = TypeAdapter(list[Vote])


def media_type(content_type: str) -> str:
    """The media type of a Content-Type header, without its parameters, lower case."""
    return content_type.partition(";")[0].strip().lower()


def accepting(*types: str) -> DependsParam:
    """A dependency answering 415 to a body of any other media type (a missing Content-Type
    included): a body a client labels otherwise is not one it meant as votes."""
    allowed = frozenset(types)
    names = " or ".join(types)

    def require(request: Request) -> None:
        given = media_type(request.headers.get("content-type", ""))
        if given not in allowed:
            raise HTTPException(
                status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
                f"Content-Type must be {names}, not {given or 'missing'}")

    return DependsParam(require)


class InvalidBody(Exception):
    def __init__(self, detail: list[dict[str, Any]] | str) -> None:
        self.detail = detail


def parse_batch(body: bytes, content_type: str, max_batch: int) -> list[Vote]:
    """Decode a JSON array or NDJSON body into votes; all-or-nothing, errors by item index.

    A well-formed body is validated in one call straight from its bytes (an NDJSON body is
    joined into an array when every line is one object); anything else, or any error, takes
    the item-by-item path, which says exactly what is wrong and where."""
    if media_type(content_type) == NDJSON:
        lines = [line for line in body.splitlines() if line.strip()]
        # each line one object: a line holding two objects would need another holding none
        if lines and all(line.lstrip()[:1] == b"{" and line.rstrip()[-1:] == b"}"
                         for line in lines):
            joined = b"[" + b",".join(lines) + b"]"
            fast = _parsed(joined, len(lines), max_batch)
            if fast is not None:
                return fast
    elif body.lstrip()[:1] == b"[":
        fast = _parsed(body, None, max_batch)
        if fast is not None:
            return fast
    return _parse_items(body, content_type, max_batch)


def _parsed(array: bytes, expected: int | None, max_batch: int) -> list[Vote] | None:
    """Votes from a JSON array in one validation, or None (the careful path then explains)."""
    try:
        votes = _votes.validate_json(array)
    except ValidationError:
        return None
    ok = 0 < len(votes) <= max_batch and (expected is None or len(votes) == expected)
    return votes if ok else None


def _parse_items(body: bytes, content_type: str, max_batch: int) -> list[Vote]:
    items: list[Any]
    if media_type(content_type) == NDJSON:
        items = []
        for lineno, line in enumerate(body.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                items.append(orjson.loads(line))
            except orjson.JSONDecodeError as exc:
                raise InvalidBody(f"line {lineno} is not valid JSON: {exc}") from exc
    else:
        try:
            decoded = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise InvalidBody(f"body is not valid JSON: {exc}") from exc
        if not isinstance(decoded, list):
            raise InvalidBody(f"a batch is a JSON array of votes (or NDJSON with {NDJSON})")
        items = decoded
    if not items:
        raise InvalidBody("the batch is empty")
    if len(items) > max_batch:
        raise InvalidBody(f"the batch has {len(items)} votes; the limit is {max_batch}")
    try:
        return _votes.validate_python(items)
    except ValidationError as exc:  # the same errors, by item index: ("body", index, field)
        raise InvalidBody(error_items(exc, prefix=("body",))) from exc
