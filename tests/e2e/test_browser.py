"""A real headless Chromium loads the page, sees the table, and sees a rank change arrive live;
and the page stays readable at LMArena's size (282 models) at 1280-1920 px and on a phone: no
horizontal overflow, nothing under the rank-change panel, whiskers wider than dots, history
charts inside the board's score range with no label on another, heatmap headers that tell
models apart, and a console without errors or failed requests. Screenshots in test-artifacts/."""

from __future__ import annotations

import itertools
import re
import shutil
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aioredis
from playwright.async_api import BrowserContext, Page, async_playwright, expect
from playwright.async_api import TimeoutError as PlaywrightTimeout

from tests.support.big_board import write_busy_history, write_lmarena_board
from tests.support.infra import ADMIN_TOKEN, Infra, service_env
from tests.support.processes import ARTIFACTS, ServiceProcess, running_stack

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
_ids = itertools.count()

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is missing")

# boxes (x, y, width, height) of the elements a selector matches, visible ones only
BOXES_JS = """sel => [...document.querySelectorAll(sel)].map(e => e.getBoundingClientRect())
  .filter(b => b.width > 0 && b.height > 0).map(b => [b.x, b.y, b.width, b.height])"""
PHONE, WIDTHS = (390, 844), [(1280, 800), (1400, 900), (1920, 1080)]


def overlapping(boxes: list[list[float]]) -> list[tuple[int, int]]:
    """Pairs of boxes that overlap by more than half a pixel each way."""
    def apart(a: list[float], b: list[float]) -> bool:
        return (a[0] + a[2] <= b[0] + 0.5 or b[0] + b[2] <= a[0] + 0.5
                or a[1] + a[3] <= b[1] + 0.5 or b[1] + b[3] <= a[1] + 0.5)
    return [(i, j) for i in range(len(boxes)) for j in range(i + 1, len(boxes))
            if not apart(boxes[i], boxes[j])]


class Console:
    """What a person would see in the devtools console: errors, and requests answered >= 400."""

    def __init__(self, page: Page) -> None:
        self.problems: list[str] = []
        page.on("console", lambda m: self.problems.append(f"console {m.type}: {m.text}")
                if m.type == "error" else None)
        page.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))
        page.on("response", lambda r: self.problems.append(f"{r.status} {r.url}")
                if r.status >= 400 else None)


async def launch(pw: object, profile: Path) -> BrowserContext:
    context: BrowserContext = await pw.chromium.launch_persistent_context(  # type: ignore[attr-defined]
        str(profile), executable_path=CHROMIUM, headless=True, args=ARGS,
        viewport={"width": 1280, "height": 800})
    return context


async def assert_chart_readable(page: Page, board_rows: list[dict[str, object]]) -> None:
    """The history chart: its y-range inside the board's score range, no label on another."""
    svg = page.locator("#chart svg")
    await expect(svg).to_be_visible(timeout=10_000)
    board_lo = min(float(r["ci_low"]) for r in board_rows)  # type: ignore[arg-type]
    board_hi = max(float(r["ci_high"]) for r in board_rows)  # type: ignore[arg-type]
    axis = [float(t) for t in await page.locator("#chart svg text").all_text_contents()
            if re.fullmatch(r"-?\d+(\.\d+)?", t.strip())]
    assert axis and board_lo <= min(axis) <= max(axis) <= board_hi, (axis, board_lo, board_hi)
    lo = float(await svg.get_attribute("data-lo") or "nan")
    hi = float(await svg.get_attribute("data-hi") or "nan")
    assert board_lo <= lo < hi <= board_hi, (lo, hi, board_lo, board_hi)
    labels = await page.evaluate(BOXES_JS, "#chart svg text")
    assert len(labels) >= 3 and not overlapping(labels), labels


async def assert_heatmap_readable(page: Page) -> None:
    """Column headers: each a different text, none on another."""
    await expect(page.locator("#heatmap th.col").first).to_be_visible(timeout=10_000)
    texts = await page.locator("#heatmap th.col").all_inner_texts()
    assert len(set(texts)) == len(texts), texts
    assert not overlapping(await page.evaluate(BOXES_JS, "#heatmap th.col span"))


async def battle(ingest: httpx.AsyncClient, winner: str, loser: str, n: int) -> None:
    votes = [{"vote_id": f"b{next(_ids)}", "arena": "text", "model_a": winner, "model_b": loser,
              "winner": "model_a"} for _ in range(n)]
    assert (await ingest.post("/v1/votes/batch", json=votes)).status_code == 202


async def test_page_shows_the_table_and_a_live_rank_change(
    live_stack: dict[str, ServiceProcess], tmp_path: Path
) -> None:
    async with httpx.AsyncClient(base_url=live_stack["ingest"].url, timeout=30) as ingest:
        admin = {"authorization": f"Bearer {ADMIN_TOKEN}"}
        for model_id, name, org, country in [("ursa", "Ursa Major", "Northwind", "US"),
                                             ("vega", "Vega 2", "Lyra AI", "CN")]:
            r = await ingest.post("/v1/admin/models", headers=admin, json={
                "id": model_id, "display_name": name, "organization": org, "country": country,
                "license": "open", "preview": False})
            assert r.status_code == 201, r.text
        await battle(ingest, "ursa", "vega", 30)

        async with async_playwright() as pw:
            browser = await launch(pw, tmp_path / "profile")
            try:
                page = await browser.new_page()
                console = Console(page)
                await page.goto(live_stack["api"].url + "/?board=text/overall")
                rows = page.locator("#standings tbody tr")
                await expect(rows.first).to_have_attribute("data-model", "ursa", timeout=20_000)
                await expect(page.locator("#standings")).to_contain_text("Ursa Major")
                await expect(page.locator("#status")).to_have_text("live", timeout=20_000)
                margin = page.locator("#margin")  # rank robustness of #1 (unbeaten: no count)
                await expect(margin).to_contain_text("#1 Ursa Major by a wide margin")

                await battle(ingest, "vega", "ursa", 80)  # the flip, while the page is open
                change = page.locator('#ticker li.change[data-model="vega"]')
                await expect(change.first).to_contain_text("→ #1", timeout=20_000)
                await expect(rows.first).to_have_attribute("data-model", "vega", timeout=10_000)
                await expect(margin).to_contain_text(  # 80 wins to 30: exactly 50 would swap
                    re.compile(r"#1 Vega 2 by a margin of \d+ votes out of 110"), timeout=10_000)
                ARTIFACTS.mkdir(exist_ok=True)
                await page.screenshot(path=str(ARTIFACTS / "leaderboard.png"), full_page=True)

                await page.locator('#standings a[href="#/model/vega"]').click()
                await expect(page.locator("#model-title")).to_have_text("Vega 2")
                await expect(page.locator("#heatmap tr.me")).to_be_visible(timeout=10_000)
                async with httpx.AsyncClient(base_url=live_stack["api"].url) as api:
                    board = (await api.get("/v1/leaderboards/text/overall")).json()
                    history = (await api.get("/v1/models/vega/history")).json()["points"]
                # vega's first points come from fits where it had only lost: no finite score,
                # and the worker says so in the point
                assert history[0]["mle_exists"] is False, history
                assert history[-1]["mle_exists"] is True, history
                await assert_chart_readable(page, board["rows"])
                await expect(page.locator("#chart-note")).to_contain_text("not drawn")
                await assert_heatmap_readable(page)
                await page.screenshot(path=str(ARTIFACTS / "model-page.png"), full_page=True)
                assert console.problems == []
            finally:
                await browser.close()


async def test_page_is_readable_with_282_models_at_every_width(
    infra: Infra, prefix: str, redis_client: aioredis.Redis, tmp_path: Path
) -> None:
    """The board is written through the worker's own writer (fit, standings and matrices
    documents, RatingStore), not voted through the pipeline: see tests/support/big_board.py."""
    rows = await write_lmarena_board(redis_client, prefix, "text", "overall")
    busy = rows[5]
    await write_busy_history(redis_client, prefix, "text", "overall", busy)
    heatmap_names = [str(r["model"]) for r in rows[:12]]
    assert len({m[:6] for m in heatmap_names}) < len(heatmap_names)  # six letters don't tell
    env = service_env(infra, prefix, PODIUM_API_HEARTBEAT_S="1")
    async with running_stack(env, prefix, names=("api",)) as services, async_playwright() as pw:
        browser = await launch(pw, tmp_path / "profile")
        try:
            page = await browser.new_page()
            console = Console(page)
            for width, height in [*WIDTHS, PHONE]:
                await page.set_viewport_size({"width": width, "height": height})
                await page.goto(services["api"].url + "/?board=text/overall")
                rows_shown = page.locator("#standings tbody tr")
                await expect(rows_shown).to_have_count(282, timeout=20_000)
                await assert_board_readable(page, width)
                await page.screenshot(path=str(ARTIFACTS / f"board-282-{width}.png"))
            model_page = f"/?board=text/overall#/model/{busy['model']}"
            await page.set_viewport_size({"width": WIDTHS[0][0], "height": WIDTHS[0][1]})
            await page.goto(services["api"].url + model_page)
            for width, height in [WIDTHS[0], PHONE]:  # the phone: the same page, resized
                await page.set_viewport_size({"width": width, "height": height})
                await wait_until_no_overflow(page, width)
                await assert_chart_readable(page, rows)
                note = page.locator("#chart-note")
                await expect(note).to_contain_text("4 of 60 points not drawn")
                await assert_heatmap_readable(page)
                await page.screenshot(path=str(ARTIFACTS / f"model-282-{width}.png"),
                                      full_page=True)
            assert console.problems == []
        finally:
            await browser.close()


async def wait_until_no_overflow(page: Page, width: int) -> None:
    """The page fits its width without horizontal scrolling (after a resize: once redrawn)."""
    fits = "document.documentElement.scrollWidth <= window.innerWidth"
    try:
        await page.wait_for_function(fits, timeout=5_000)
    except PlaywrightTimeout:
        scroll = await page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
        raise AssertionError(f"page overflows at {width}px: {scroll}") from None


async def assert_board_readable(page: Page, width: int) -> None:
    """No horizontal scrolling; the Elo column in sight and clear of the rank-change panel (on
    a phone it is left out); the CI whiskers of most rows wider than a dot."""
    scroll = await page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert scroll[0] <= scroll[1], f"page overflows at {width}px: {scroll}"
    [panel] = await page.evaluate(BOXES_JS, "aside")
    elo = await page.evaluate(BOXES_JS, "#standings thead th:last-child")
    assert await page.locator("#standings thead th:last-child").inner_text() == "Elo"
    if width > PHONE[0]:
        assert elo and elo[0][0] + elo[0][2] <= width, (width, elo)
        assert not overlapping([panel, elo[0]]), (width, panel, elo)
    table = await page.evaluate(BOXES_JS, "#standings")
    assert table[0][0] + table[0][2] <= width + 0.5, (width, table)
    bars = sorted(await page.evaluate("""[...document.querySelectorAll('#standings .whisker .bar')]
        .map(e => e.getBoundingClientRect().width)"""))
    assert bars[len(bars) // 2] >= 12, f"median whisker {bars[len(bars) // 2]}px at {width}px"
