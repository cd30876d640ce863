"""Pure helpers over standings rows: label them with registry facts, filter, group, export."""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from shared.events import BENCH_ARENA, ModelInfo

EXPORT_COLUMNS = ("rank", "rank_ub", "model", "display_name", "organization", "country",
                  "license", "preview", "score", "ci_low", "ci_high", "votes", "preliminary",
                  "deprecated", "listed")


@dataclass(frozen=True)
class ListingPolicy:
    """The deployment's publishing rules (``PODIUM_API_MIN_VOTES_TO_LIST``,
    ``PODIUM_API_PRELIMINARY_MIN_VOTES``, ``PODIUM_API_PRELIMINARY_MIN_FRESH_VOTES``)."""

    min_votes_to_list: int = 0
    preliminary_min_votes: int = 0
    preliminary_min_fresh_votes: int = 0

    def judged(self, row: dict[str, Any], info: ModelInfo | None, board: str) -> None:
        """Set the row's ``deprecated``, ``listed``, ``preliminary`` and ``why`` (the reasons
        for each flag that is not the plain case), in place."""
        votes = int(row["votes"])
        if (votes >= self.min_votes_to_list and votes >= self.preliminary_min_votes
                and not row.get("preliminary")
                and (info is None or (not info.deprecated and info.public_since is None))):
            row["preliminary"], row["deprecated"], row["listed"], row["why"] = (
                False, False, True, [])  # the plain row (most of a board): no reasons to build
            return
        why: list[str] = []
        deprecated = info is not None and info.deprecated
        if deprecated:
            assert info is not None
            since = f" since {info.deprecated_at.isoformat()}" if info.deprecated_at else ""
            why.append(f"deprecated{since}: hidden by default, kept in the fit")
        listed = votes >= self.min_votes_to_list
        if not listed:
            why.append(f"unlisted: {votes} votes, fewer than the {self.min_votes_to_list} "
                       "needed to be listed")
        preliminary = bool(row.get("preliminary"))
        if preliminary:
            why.append(f"preliminary: {votes} votes, too few for a settled score")
        elif votes < self.preliminary_min_votes:
            preliminary = True
            why.append(f"preliminary: {votes} votes, fewer than {self.preliminary_min_votes}")
        fresh = self.fresh_votes(votes, info, board)
        if fresh is not None and fresh < self.preliminary_min_fresh_votes:
            preliminary = True
            why.append(f"preliminary: {fresh} votes since public release, fewer than "
                       f"{self.preliminary_min_fresh_votes}")
        row["preliminary"] = preliminary
        row["deprecated"] = deprecated
        row["listed"] = listed
        row["why"] = why

    @staticmethod
    def fresh_votes(votes: int, info: ModelInfo | None, board: str) -> int | None:
        """Votes on the board since the model's ``public_since`` was recorded (its votes then
        are the baseline), or None when it has none."""
        if info is None or info.public_since is None:
            return None
        baseline = (info.public_votes or {}).get(board, 0)
        return max(0, votes - baseline)


NO_THRESHOLDS = ListingPolicy()


def labelled(rows: Sequence[Mapping[str, Any]], registry: Mapping[str, ModelInfo],
             board: str = "", policy: ListingPolicy | None = None) -> list[dict[str, Any]]:
    """Rows with the registry facts of their model (null when the model is not registered) and
    the publishing rules' verdict (``ListingPolicy.judged``). Benchmark boards have no votes
    (a row is one score): only deprecation applies there."""
    if policy is None or board.startswith(BENCH_ARENA + "/"):
        policy = NO_THRESHOLDS
    out = []
    for row in rows:
        info = registry.get(str(row["model"]))
        labelled_row = {
            **row,
            "display_name": info.display_name if info else None,
            "organization": info.organization if info else None,
            "country": info.country if info else None,
            "license": info.license if info else None,
            "preview": info.preview if info else None,
        }
        policy.judged(labelled_row, info, board)
        out.append(labelled_row)
    return out


@dataclass(frozen=True)
class RowFilter:
    organization: str | None = None
    country: str | None = None
    license: Literal["open", "proprietary"] | None = None
    preview: bool | None = None
    min_votes: int = 0
    top: int | None = None
    include_deprecated: bool = False
    include_unlisted: bool = False

    def render(self, doc: dict[str, Any]) -> dict[str, Any]:
        """The board document with only the rows that pass."""
        doc["rows"] = self.apply(doc["rows"])
        return doc

    def apply(self, rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Labelled rows that pass every filter, then the first ``top``, with their position."""
        kept: list[dict[str, Any]] = []
        for row in rows:
            if not self.include_deprecated and row.get("deprecated"):
                continue
            if not self.include_unlisted and row.get("listed") is False:
                continue
            if self.organization is not None and (
                    str(row.get("organization") or "").casefold() != self.organization.casefold()):
                continue
            if self.country is not None and (row.get("country") or "") != self.country.upper():
                continue
            if self.license is not None and row.get("license") != self.license:
                continue
            if self.preview is not None and bool(row.get("preview")) != self.preview:
                continue
            if int(row["votes"]) < self.min_votes:
                continue
            kept.append({**row, "position": len(kept) + 1})
            if self.top is not None and len(kept) >= self.top:
                break
        return kept


def groups(rows: Sequence[Mapping[str, Any]], by: Literal["organization", "country"], top: int
           ) -> list[dict[str, Any]]:
    """Best rank per organization or country, and how many of the first ``top`` ranks each
    holds; rows without the attribute are left out. Ordered by best rank."""
    found: dict[str, dict[str, Any]] = {}
    for row in sorted(rows, key=lambda r: int(r["rank"])):
        name = row.get(by)
        if not name:
            continue
        group = found.get(name)
        if group is None:
            group = found[name] = {"name": name, "best_rank": int(row["rank"]),
                                   "best_model": row["model"], "best_score": float(row["score"]),
                                   "models": 0, "in_top": 0}
        group["models"] += 1
        if int(row["rank"]) <= top:
            group["in_top"] += 1
    return sorted(found.values(), key=lambda g: (g["best_rank"], g["name"]))


def headline(found: Sequence[Mapping[str, Any]], top: int) -> str:
    leader = max(found, key=lambda g: (g["in_top"], -g["best_rank"]), default=None)
    if leader is None or leader["in_top"] == 0:
        return f"no registered group holds a place in the top {top}"
    return f"{leader['name']} models hold {leader['in_top']} of the top {top}"


def export_json(board: str, rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """LMArena's published shape: ``{board: {model: {rating, rating_q025, rating_q975}}}``."""
    return {board: {str(r["model"]): {"rating": r["score"], "rating_q025": r["ci_low"],
                                      "rating_q975": r["ci_high"]} for r in rows}}


def export_csv(rows: Sequence[Mapping[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=EXPORT_COLUMNS, extrasaction="ignore",
                            lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({c: row.get(c) for c in EXPORT_COLUMNS})
    return out.getvalue()
