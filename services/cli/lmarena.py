"""LMArena battle rows (JSONL or CSV with LMArena's column names) as Podium votes.

Columns used: ``model_a``, ``model_b``, ``winner`` (``model_a``, ``model_b``, ``tie``,
``tie (bothbad)``), ``language`` (a name such as "English" or a code), ``turn``, ``anony``,
``tstamp``, and when present ``question_id`` (the vote id) and ``judge`` (the voter). Other
columns are ignored. A row that cannot be mapped becomes a ``Rejected`` with the reason.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import orjson
from pydantic import ValidationError

from shared.events import Vote

WINNERS = {"model_a": "model_a", "model_b": "model_b", "tie": "tie",
           "tie (bothbad)": "tie_bothbad", "tie_bothbad": "tie_bothbad"}

# Language names LMArena writes, as ISO 639-1 codes. Other names become a lower-case slug
# ("Tagalog" -> "tagalog"); "unknown" and empty mean "no language".
LANGUAGES = {
    "english": "en", "chinese": "zh", "russian": "ru", "spanish": "es", "german": "de",
    "french": "fr", "japanese": "ja", "korean": "ko", "portuguese": "pt", "italian": "it",
    "vietnamese": "vi", "polish": "pl", "arabic": "ar", "turkish": "tr", "persian": "fa",
    "indonesian": "id", "dutch": "nl", "ukrainian": "uk", "hindi": "hi", "hebrew": "he",
    "czech": "cs", "thai": "th", "swedish": "sv", "greek": "el", "hungarian": "hu",
    "romanian": "ro", "danish": "da", "finnish": "fi", "norwegian": "no", "bengali": "bn",
}
NO_LANGUAGE = {"", "unknown", "none", "null", "n/a"}
TRUE = {"true", "1", "yes", "t"}
FALSE = {"false", "0", "no", "f"}
_SLUG = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


@dataclass(frozen=True)
class Rejected:
    line: int  # 1-based row number in the file (header excluded)
    kind: str  # what was wrong, for the summary: a column name, "json", "unknown_model", ...
    reason: str


class RowError(ValueError):
    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind


def language_code(value: Any) -> str | None:
    if value is None:
        return None
    name = str(value).strip().lower()
    if name in NO_LANGUAGE:
        return None
    if name in LANGUAGES:
        return LANGUAGES[name]
    slug = re.sub(r"[\s_]+", "-", name)
    if not _SLUG.match(slug):
        raise RowError("language", f"language {value!r} cannot be made a slug")
    return slug


def flag(value: Any, column: str, default: bool) -> bool:
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in TRUE:
        return True
    if text in FALSE:
        return False
    raise RowError(column, f"{column} {value!r} is not true or false")


def turns(value: Any) -> int:
    if value is None or value == "":
        return 1
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise RowError("turn", f"turn {value!r} is not a number") from None
    if number != int(number) or number < 1:
        raise RowError("turn", f"turn {value!r} is not a whole number >= 1")
    return int(number)


def vote_id(row: Mapping[str, Any], line: int) -> str:
    """``question_id`` when the row has one, else a hash of the battle and its row number:
    a second replay of the same file sends the same ids (and ingest counts none twice)."""
    given = row.get("question_id")
    if given not in (None, ""):
        return str(given)[:128]
    seed = "|".join(str(row.get(k, "")) for k in ("tstamp", "model_a", "model_b", "winner"))
    return "lma-" + hashlib.sha1(f"{line}|{seed}".encode()).hexdigest()[:24]


def to_vote(row: Mapping[str, Any], line: int, arena: str,
            categories: tuple[str, ...] = ()) -> Vote | Rejected:
    winner = WINNERS.get(str(row.get("winner", "")).strip())
    if winner is None:
        return Rejected(line, "winner",
                        f"winner {row.get('winner')!r} is not one of {sorted(WINNERS)}")
    try:
        fields: dict[str, Any] = {
            "vote_id": vote_id(row, line), "arena": arena,
            "model_a": str(row.get("model_a") or "").strip(),
            "model_b": str(row.get("model_b") or "").strip(),
            "winner": winner, "categories": list(categories),
            "language": language_code(row.get("language")),
            "turns": turns(row.get("turn")),
            "anonymous": flag(row.get("anony"), "anony", default=True),
        }
    except RowError as exc:
        return Rejected(line, exc.kind, str(exc))
    if row.get("judge") not in (None, ""):
        fields["voter"] = str(row["judge"])[:128]
    try:
        return Vote.model_validate(fields)
    except ValidationError as exc:
        err = exc.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(p) for p in err["loc"])
        return Rejected(line, where or "vote", f"{where}: {err['msg']}" if where else err["msg"])


def read_rows(path: Path) -> Iterator[tuple[int, dict[str, Any] | Rejected]]:
    """(row number, row) of a ``.jsonl``/``.ndjson`` or ``.csv`` file; unreadable rows come as
    ``Rejected``. The format is told by the extension, else by the first character."""
    with path.open(encoding="utf-8", newline="") as fh:
        if _is_jsonl(path, fh):
            yield from _jsonl_rows(fh)
        else:
            yield from _csv_rows(fh)


def _is_jsonl(path: Path, fh: TextIO) -> bool:
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson", ".json"):
        return True
    if suffix == ".csv":
        return False
    first = fh.read(1)
    fh.seek(0)
    return first in ("{", "")


def _jsonl_rows(fh: TextIO) -> Iterator[tuple[int, dict[str, Any] | Rejected]]:
    line = 0
    for text in fh:
        if not text.strip():
            continue
        line += 1
        try:
            row = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            yield line, Rejected(line, "json", f"not valid JSON: {exc}")
            continue
        if not isinstance(row, dict):
            yield line, Rejected(line, "json", "not a JSON object")
            continue
        yield line, row


def _csv_rows(fh: TextIO) -> Iterator[tuple[int, dict[str, Any] | Rejected]]:
    reader = csv.DictReader(fh)
    missing = {"model_a", "model_b", "winner"} - set(reader.fieldnames or [])
    if missing:
        raise RowError("csv", f"the CSV has no column(s) {', '.join(sorted(missing))}")
    for line, row in enumerate(reader, start=1):
        if None in row:  # more cells than header columns
            yield line, Rejected(line, "csv", "more cells than columns")
            continue
        yield line, dict(row)


def parse_text(text: str, fmt: str) -> list[tuple[int, dict[str, Any] | Rejected]]:
    """Rows of ``text`` in ``fmt`` ("jsonl" or "csv"), for tests and small inputs."""
    fh = io.StringIO(text)
    return list(_jsonl_rows(fh) if fmt == "jsonl" else _csv_rows(fh))
