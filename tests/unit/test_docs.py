"""The docs hold together: every relative link (and its #anchor) resolves, every HTTP endpoint
of ingest and api is in docs/api.md, and the README stays short."""

from __future__ import annotations

import importlib
import pkgutil
import re
from pathlib import Path

import pytest
from fastapi import APIRouter, FastAPI
from fastapi.routing import APIWebSocketRoute

import services.api
from services.api.app import create_app as create_api
from services.ingest.app import create_app as create_ingest
from shared.settings import ApiSettings, IngestSettings

ROOT = Path(__file__).resolve().parents[2]
DOCS = sorted([ROOT / "README.md", *ROOT.glob("docs/*.md"), *ROOT.glob("bench/*.md")])
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)


def anchors(markdown: str) -> set[str]:
    """GitHub's anchors of a document's headings: lower case, punctuation dropped, spaces to
    hyphens; a repeated heading gets -1, -2, ..."""
    seen: dict[str, int] = {}
    out = set()
    for heading in re.findall(r"^#+\s+(.*)$", FENCE.sub("", markdown), re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def links(doc: Path) -> list[str]:
    return LINK.findall(FENCE.sub("", doc.read_text()))


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(doc: Path) -> None:
    broken = []
    for target in links(doc):
        if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        file = (doc.parent / path).resolve() if path else doc
        if not file.exists():
            broken.append(f"{target}: no such file")
        elif anchor and file.suffix == ".md" and anchor not in anchors(file.read_text()):
            broken.append(f"{target}: no heading #{anchor} in {file.relative_to(ROOT)}")
    assert not broken, broken


def test_the_anchor_rule_is_githubs() -> None:
    assert anchors("# A b\n## Redis: one server or a Redis Cluster\n```\n# no\n```\n## A b") == {
        "a-b", "redis-one-server-or-a-redis-cluster", "a-b-1"}
    assert anchors("## Command line: `podium`") == {"command-line-podium"}


def operations(app: FastAPI) -> set[str]:
    """``METHOD /path`` of every operation in the app's OpenAPI document."""
    return {f"{method.upper()} {path}" for path, ops in app.openapi()["paths"].items()
            for method in ops}


def websockets() -> set[str]:
    """``WEBSOCKET /path`` of the api's routers (OpenAPI has no WebSocket routes)."""
    out = set()
    for module in pkgutil.iter_modules(services.api.__path__):
        router = getattr(importlib.import_module(f"services.api.{module.name}"), "router", None)
        if isinstance(router, APIRouter):
            out |= {f"WEBSOCKET {route.path}" for route in router.routes
                    if isinstance(route, APIWebSocketRoute)}
    return out


def test_every_endpoint_is_in_the_api_doc() -> None:
    text = (ROOT / "docs/api.md").read_text()
    apps = [create_ingest(IngestSettings()).app, create_api(ApiSettings()).app]
    found = operations(apps[0]) | operations(apps[1]) | websockets()
    assert "POST /v1/votes" in found and "WEBSOCKET /v1/ws/rank-changes" in found
    missing = sorted(e for e in found if f"`{e}`" not in text)
    assert not missing, f"not in docs/api.md's table: {missing}"


def test_the_readme_fits_on_two_screens_before_its_links() -> None:
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines[:lines.index("## Read on")]) <= 120
