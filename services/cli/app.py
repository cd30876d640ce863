"""The ``podium`` command line: replay LMArena battles, rebuild, export, tail rank changes,
manage the model registry. It talks to the services over HTTP through ``shared.client``."""

from __future__ import annotations

import asyncio
import importlib.util
import subprocess
import sys
from collections.abc import Awaitable, Callable
from datetime import date
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, TypeVar

import orjson
import typer
from pydantic import SecretStr, ValidationError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from services.cli.lmarena import RowError
from services.cli.releases import releases_app
from services.cli.replay import ReplaySummary, replay
from shared.client import PodiumClient, PodiumError, PodiumUnavailable
from shared.events import ModelFields, ModelInfo, RankChange, utc_now
from shared.settings import ClientSettings

T = TypeVar("T")

app = typer.Typer(help="Podium: live Bradley-Terry leaderboards.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
votes_app = typer.Typer(help="Votes.", no_args_is_help=True)
models_app = typer.Typer(help="The model registry.", no_args_is_help=True)
tail_app = typer.Typer(help="Follow live streams.", no_args_is_help=True)
app.add_typer(votes_app, name="votes")
app.add_typer(models_app, name="models")
app.add_typer(tail_app, name="tail")
app.add_typer(releases_app, name="releases")

out = Console()
err = Console(stderr=True)
REBUILD_MODULE = "services.rating.rebuild"


class ExportFormat(StrEnum):
    json = "json"
    csv = "csv"


class SignificanceChoice(StrEnum):
    PUBLISHED = "published"
    SEPARATED = "separated"
    ANY = "any"


class LicenseChoice(StrEnum):
    open = "open"
    proprietary = "proprietary"


@app.callback()
def main_options(
    ctx: typer.Context,
    ingest_url: Annotated[str | None, typer.Option(
        help="ingest base URL [env PODIUM_INGEST_URL, default http://127.0.0.1:8001]")] = None,
    api_url: Annotated[str | None, typer.Option(
        help="api base URL [env PODIUM_API_URL, default http://127.0.0.1:8000]")] = None,
    admin_token: Annotated[str | None, typer.Option(
        help="admin bearer token [env PODIUM_INGEST_ADMIN_TOKEN]")] = None,
    api_key: Annotated[str | None, typer.Option(
        help="client key sent with votes [env PODIUM_CLIENT_API_KEY]")] = None,
) -> None:
    settings = ClientSettings()
    changes: dict[str, Any] = {}
    if ingest_url:
        changes["ingest_url"] = ingest_url.rstrip("/")
    if api_url:
        changes["api_url"] = api_url.rstrip("/")
    if admin_token:
        changes["ingest_admin_token"] = SecretStr(admin_token)
    if api_key:
        changes["client_api_key"] = SecretStr(api_key)
    ctx.obj = settings.model_copy(update=changes)


def _run(ctx: typer.Context, work: Callable[[PodiumClient], Awaitable[T]]) -> T:
    """Run ``work`` with a client; service errors become a message and exit code 1."""

    async def go() -> T:
        async with PodiumClient(ctx.obj) as client:
            return await work(client)

    try:
        return asyncio.run(go())
    except (PodiumError, PodiumUnavailable, RowError) as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None


@votes_app.command("replay")
def votes_replay(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True,
                                         help="JSONL or CSV with LMArena's columns.")],
    arena: Annotated[str, typer.Option(help="Arena the battles belong to.")] = "text",
    category: Annotated[list[str] | None, typer.Option(
        help="Category of every battle (repeatable).")] = None,
    batch_size: Annotated[int, typer.Option(min=1, max=10_000)] = 1000,
    register_models: Annotated[bool, typer.Option(
        help="Register unknown models (needs the admin token) instead of rejecting their "
        "rows.")] = False,
    json_summary: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")
                            ] = False,
) -> None:
    """Post LMArena battles (model_a, model_b, winner, language, turn, anony, tstamp) to ingest
    and print how many were accepted and which rows were rejected, and why."""
    total = _count_rows(file)
    with Progress(TextColumn("replaying"), BarColumn(), MofNCompleteColumn(),
                  TimeRemainingColumn(), console=err, disable=json_summary) as bar:
        task = bar.add_task("rows", total=total)
        summary = _run(ctx, lambda client: replay(
            client, file, arena=arena, categories=tuple(category or ()),
            batch_size=batch_size, register_models=register_models,
            progress=lambda n: bar.advance(task, n)))
    if json_summary:
        out.print_json(orjson.dumps(summary.as_dict()).decode())
    else:
        _print_summary(summary)
    if summary.rows and not summary.accepted and not summary.duplicates:
        raise typer.Exit(1)


def _count_rows(path: Path) -> int:
    with path.open("rb") as fh:
        lines = sum(1 for line in fh if line.strip())
    return lines - 1 if path.suffix.lower() == ".csv" else lines


def _print_summary(summary: ReplaySummary) -> None:
    rejected = sum(summary.rejected.values())
    out.print(f"{summary.rows} rows: {summary.accepted} accepted, {summary.duplicates} "
              f"duplicates (sent before), {rejected} rejected")
    if summary.registered:
        out.print(f"registered {len(summary.registered)} model(s): "
                  + ", ".join(summary.registered))
    if rejected:
        table = Table("why", "rows", "examples")
        for kind, count in summary.rejected.most_common():
            examples = "\n".join(f"row {r.line}: {r.reason}" for r in summary.examples[kind])
            table.add_row(kind, str(count), examples)
        out.print(table)


@app.command("rebuild", context_settings={"allow_extra_args": True,
                                          "ignore_unknown_options": True})
def rebuild(ctx: typer.Context) -> None:
    """Replay the votes topic into a fresh key space and switch to it
    (runs ``python -m services.rating.rebuild`` with the same PODIUM_* settings; extra
    arguments are passed on)."""
    if importlib.util.find_spec(REBUILD_MODULE) is None:
        err.print(f"[red]error:[/red] {REBUILD_MODULE} is not installed with this Podium")
        raise typer.Exit(2)
    code = subprocess.call([sys.executable, "-m", REBUILD_MODULE, *ctx.args])
    raise typer.Exit(code)


@app.command("export")
def export(
    ctx: typer.Context,
    board: Annotated[str, typer.Argument(help="e.g. text/overall, text/lang:zh, bench/gpqa")],
    fmt: Annotated[ExportFormat, typer.Option("--format")] = ExportFormat.json,
    output: Annotated[Path | None, typer.Option("--output", "-o",
                                                help="Write here instead of stdout.")] = None,
) -> None:
    """A board in LMArena's published JSON shape, or CSV."""
    data = _run(ctx, lambda client: client.export(board, fmt.value))
    if output is None:
        sys.stdout.buffer.write(data if data.endswith(b"\n") else data + b"\n")
        sys.stdout.flush()
    else:
        output.write_bytes(data)
        err.print(f"wrote {len(data)} bytes to {output}")


def describe_change(c: RankChange) -> str:
    """One line for a person: the move, the published rank, whom it passed, its kind."""
    old = "new" if c.old_rank is None else f"#{c.old_rank}"
    published = (f"  rank (UB) {c.old_rank_ub} -> {c.rank_ub}"
                 if c.old_rank_ub is not None and c.old_rank_ub != c.rank_ub
                 else f"  rank (UB) {c.rank_ub}")
    passed = f"  passes {', '.join(c.passed[:3])}" if c.passed else ""
    damped = " (repeat)" if c.damped else ""
    return (f"{c.board}  {c.model}  {old} -> #{c.new_rank}{published}  "
            f"score {c.new_score:.1f}  votes {c.votes}{passed}  [{c.significance}{damped}]")


@tail_app.command("rank-changes")
def tail_rank_changes(
    ctx: typer.Context,
    board: Annotated[str | None, typer.Option()] = None,
    model: Annotated[str | None, typer.Option()] = None,
    organization: Annotated[str | None, typer.Option()] = None,
    top: Annotated[int | None, typer.Option(min=1)] = None,
    significance: Annotated[SignificanceChoice, typer.Option(
        help="published: moves of the published rank (rank_ub) and new models; separated: "
        "also swaps with a model whose interval is now apart; any: every reordering.")
    ] = SignificanceChoice.SEPARATED,
    last_event_id: Annotated[str | None, typer.Option(
        help="Resume after this event id (partition:offset).")] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="Stop after N changes.")] = None,
    json_lines: Annotated[bool, typer.Option("--json", help="One JSON object per line.")
                          ] = False,
) -> None:
    """Follow rank changes live (SSE); reconnects and resumes by itself."""

    async def follow(client: PodiumClient) -> None:
        seen = 0
        async for event in client.rank_changes(board=board, model=model,
                                               organization=organization, top=top,
                                               significance=significance.value,
                                               last_event_id=last_event_id):
            c = event.change
            if json_lines:
                line = {"id": event.id, **c.model_dump(mode="json")}
                sys.stdout.write(orjson.dumps(line).decode() + "\n")
                sys.stdout.flush()
            else:
                out.print(f"{event.id}  {describe_change(c)}")
            seen += 1
            if limit is not None and seen >= limit:
                return

    try:
        _run(ctx, follow)
    except KeyboardInterrupt:
        raise typer.Exit(0) from None


@models_app.command("add")
def models_add(
    ctx: typer.Context,
    model_id: Annotated[str, typer.Argument(metavar="ID")],
    display_name: Annotated[str | None, typer.Option()] = None,
    organization: Annotated[str | None, typer.Option()] = None,
    country: Annotated[str | None, typer.Option(help="ISO 3166-1 alpha-2, e.g. CN")] = None,
    license: Annotated[LicenseChoice | None, typer.Option()] = None,
    preview: Annotated[bool, typer.Option()] = False,
    release_date: Annotated[str | None, typer.Option(help="YYYY-MM-DD")] = None,
) -> None:
    """Register a model (ingest admin endpoint; needs the admin token)."""
    fields: dict[str, Any] = {"id": model_id, "display_name": display_name,
                              "organization": organization, "country": country,
                              "license": license.value if license else None,
                              "preview": preview,
                              "release_date": date.fromisoformat(release_date)
                              if release_date else None}
    try:
        info = ModelInfo.model_validate({k: v for k, v in fields.items() if v is not None})
    except (ValidationError, ValueError) as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    if _run(ctx, lambda client: client.register_model(info)):
        out.print(f"registered {info.id}")
    else:
        err.print(f"{info.id} is already registered")
        raise typer.Exit(1)


@models_app.command("deprecate")
def models_deprecate(
    ctx: typer.Context,
    model_id: Annotated[str, typer.Argument(metavar="ID")],
    undo: Annotated[bool, typer.Option("--undo", help="Bring it back.")] = False,
) -> None:
    """Retire a model: hidden from the boards' default view, kept in the fit (admin token)."""
    info = _run(ctx, lambda client: client.update_model(
        model_id, ModelFields(deprecated=not undo)))
    out.print(f"{info.id} deprecated since {info.deprecated_at.isoformat()}"
              if info.deprecated_at else f"{info.id} is not deprecated")


@models_app.command("release")
def models_release(
    ctx: typer.Context,
    model_id: Annotated[str, typer.Argument(metavar="ID")],
    since: Annotated[str | None, typer.Option(
        help="ISO 8601 with a time zone (default: now); its fresh votes count from now.")] = None,
) -> None:
    """Record a model's public release (``public_since``): it stays preliminary until it has
    ``PODIUM_API_PRELIMINARY_MIN_FRESH_VOTES`` votes counted from now (admin token)."""
    try:
        fields = ModelFields.model_validate({"public_since": since or utc_now().isoformat()})
    except ValidationError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    info = _run(ctx, lambda client: client.update_model(model_id, fields))
    out.print(f"{info.id} public since {info.public_since}; baseline {info.public_votes or {}}")


@models_app.command("list")
def models_list(
    ctx: typer.Context,
    json_lines: Annotated[bool, typer.Option("--json", help="One JSON object per line.")
                          ] = False,
) -> None:
    """The registered models (from the api)."""
    models = _run(ctx, lambda client: client.list_models())
    if json_lines:
        for m in models:
            sys.stdout.write(m.model_dump_json() + "\n")
        return
    table = Table("id", "name", "organization", "country", "license", "preview", "released",
                  "deprecated")
    for m in models:
        table.add_row(m.id, m.display_name, m.organization or "", m.country or "",
                      m.license or "", "yes" if m.preview else "",
                      m.release_date.isoformat() if m.release_date else "",
                      m.deprecated_at.date().isoformat() if m.deprecated_at else "")
    out.print(table)
