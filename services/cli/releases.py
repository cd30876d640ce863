"""``podium releases``: publish a board's release, list releases, diff two (shared.client)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from shared.client import PodiumClient, PodiumError, PodiumUnavailable

T = TypeVar("T")

releases_app = typer.Typer(help="Dated, immutable releases of boards.", no_args_is_help=True)
out = Console()
err = Console(stderr=True)


def _run(ctx: typer.Context, work: Callable[[PodiumClient], Awaitable[T]]) -> T:
    """Run ``work`` with a client; service errors become a message and exit code 1."""

    async def go() -> T:
        async with PodiumClient(ctx.obj) as client:
            return await work(client)

    try:
        return asyncio.run(go())
    except (PodiumError, PodiumUnavailable) as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None


@releases_app.command("publish")
def publish(
    ctx: typer.Context,
    board: Annotated[str, typer.Argument(help="e.g. text/overall")],
    release_id: Annotated[str | None, typer.Option("--id", help="Default: "
                                                   "{arena}.{view}.{UTC stamp}.")] = None,
    note: Annotated[str | None, typer.Option()] = None,
) -> None:
    """Publish a release of a board (ingest admin endpoint; needs the admin token)."""
    summary = _run(ctx, lambda client: client.publish_release(board, release_id, note))
    out.print(f"published {summary.id}: {summary.board}, {summary.models} models, "
              f"{summary.votes} votes, at {summary.published_at}")


@releases_app.command("list")
def list_releases(
    ctx: typer.Context,
    board: Annotated[str | None, typer.Option(help="Only this board's.")] = None,
) -> None:
    """Published releases, newest first."""
    found = _run(ctx, lambda client: client.releases(board))
    table = Table("id", "board", "published", "models", "votes", "leader", "note")
    for s in found:
        table.add_row(s.id, s.board, s.published_at, str(s.models), str(s.votes),
                      s.leader or "", s.note or "")
    out.print(table)


@releases_app.command("diff")
def diff(ctx: typer.Context, from_id: Annotated[str, typer.Argument(metavar="FROM")],
         to_id: Annotated[str, typer.Argument(metavar="TO")]) -> None:
    """Who moved between two releases of a board, new and retired models."""
    found = _run(ctx, lambda client: client.release_diff(from_id, to_id))
    table = Table("model", "rank", "change", "score", "change")
    for m in found.moved + found.unchanged:
        table.add_row(m.model, f"{m.rank_from} → {m.rank_to}", f"{m.rank_change:+d}",
                      f"{m.score_from:.1f} → {m.score_to:.1f}", f"{m.score_change:+.1f}")
    for e in found.new:
        table.add_row(e.model, f"new at {e.rank}", "", f"{e.score:.1f}", "")
    for e in found.retired:
        table.add_row(e.model, f"retired from {e.rank}", "", f"{e.score:.1f}", "")
    out.print(f"{found.board}: {found.from_release.id} → {found.to_release.id}")
    out.print(table)
