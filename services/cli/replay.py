"""``podium votes replay``: LMArena battle files through ingest, in batches, with a summary.

A batch is all or nothing on the server, so rows it refuses (invalid, unknown model) are taken
out with their reasons and the rest of the batch is sent again: one bad row costs itself only.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from services.cli.lmarena import Rejected, read_rows, to_vote
from shared.client import PodiumClient, VotesRejected
from shared.events import ModelInfo, Vote

EXAMPLES_PER_KIND = 3


@dataclass
class ReplaySummary:
    rows: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    examples: dict[str, list[Rejected]] = field(default_factory=dict)
    registered: list[str] = field(default_factory=list)

    def reject(self, item: Rejected) -> None:
        self.rejected[item.kind] += 1
        shown = self.examples.setdefault(item.kind, [])
        if len(shown) < EXAMPLES_PER_KIND:
            shown.append(item)

    def as_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows, "accepted": self.accepted, "duplicates": self.duplicates,
            "rejected": sum(self.rejected.values()), "rejected_by_kind": dict(self.rejected),
            "registered_models": self.registered,
            "examples": {k: [f"row {r.line}: {r.reason}" for r in v]
                         for k, v in self.examples.items()},
        }


Progress = Callable[[int], None]  # called with the number of rows just handled


async def replay(
    client: PodiumClient,
    path: Path,
    *,
    arena: str = "text",
    categories: tuple[str, ...] = (),
    batch_size: int = 1000,
    register_models: bool = False,
    progress: Progress | None = None,
) -> ReplaySummary:
    summary = ReplaySummary()
    known: set[str] = set()
    batch: list[tuple[int, Vote]] = []

    async def flush() -> None:
        handled = len(batch)
        await _send(client, batch, summary, register_models, known)
        batch.clear()
        if progress is not None:
            progress(handled)

    for line, row in read_rows(path):
        summary.rows += 1
        item = row if isinstance(row, Rejected) else to_vote(row, line, arena, categories)
        if isinstance(item, Rejected):
            summary.reject(item)
            if progress is not None:
                progress(1)
            continue
        batch.append((line, item))
        if len(batch) >= batch_size:
            await flush()
    if batch:
        await flush()
    return summary


async def _send(client: PodiumClient, batch: list[tuple[int, Vote]], summary: ReplaySummary,
                register_models: bool, known: set[str]) -> None:
    pending = list(batch)
    while pending:
        try:
            receipt = await client.post_votes([v for _, v in pending])
        except VotesRejected as exc:
            pending = await _without_refused(client, pending, exc, summary, register_models,
                                             known)
            continue
        summary.accepted += len(receipt.accepted) - len(receipt.duplicates)
        summary.duplicates += len(receipt.duplicates)
        return


async def _without_refused(
    client: PodiumClient, pending: list[tuple[int, Vote]], exc: VotesRejected,
    summary: ReplaySummary, register_models: bool, known: set[str],
) -> list[tuple[int, Vote]]:
    """The rows of ``pending`` still worth sending after the server refused the batch."""
    unknown = set(exc.unknown_models()) - known
    if unknown and register_models:
        for model in sorted(unknown):
            if await client.register_model(ModelInfo(id=model)):
                summary.registered.append(model)
            known.add(model)
        return pending
    if unknown:
        keep = []
        for line, vote in pending:
            missing = sorted({vote.model_a, vote.model_b} & unknown)
            if missing:
                summary.reject(Rejected(line, "unknown_model",
                                        f"unknown model(s) {', '.join(missing)}"))
            else:
                keep.append((line, vote))
        return keep
    refused = dict(_by_index(exc.detail))
    if not refused:  # nothing to pin on a row: the whole batch is refused
        for line, _ in pending:
            summary.reject(Rejected(line, "server", str(exc.detail)[:200]))
        return []
    keep = []
    for index, (line, vote) in enumerate(pending):
        if index in refused:
            summary.reject(Rejected(line, "server", refused[index]))
        else:
            keep.append((line, vote))
    return keep


def _by_index(detail: Any) -> Iterable[tuple[int, str]]:
    """(batch index, message) of each error whose ``loc`` is ``["body", index, ...]``."""
    for item in detail if isinstance(detail, list) else []:
        loc = item.get("loc", []) if isinstance(item, dict) else []
        if len(loc) >= 2 and loc[0] == "body" and isinstance(loc[1], int):
            where = ".".join(str(p) for p in loc[2:])
            yield loc[1], f"{where}: {item.get('msg', '')}" if where else str(item.get("msg"))
