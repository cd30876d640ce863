"""The page's sampling block in a real headless Chromium (issue #20 item 2): per organization
and license, the share of battles all time and in the recent window against uniform, and the
most and least sampled models, as the sampling report gives them; the console stays clean.
Screenshot in test-artifacts/sampling.png."""

from __future__ import annotations

import itertools
import shutil
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import async_playwright, expect

from tests.support.infra import ADMIN_TOKEN
from tests.support.processes import ARTIFACTS, ServiceProcess
from tests.support.wait import wait_until

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
ADMIN = {"authorization": f"Bearer {ADMIN_TOKEN}"}
MODELS = {"ursa": ("Northwind", "open"), "vega": ("Northwind", "proprietary"),
          "wolf": ("Lyra AI", "proprietary"), "xeno": ("Orbital", "open")}
PAIRS = [("ursa", "vega", 60), ("vega", "wolf", 30), ("ursa", "wolf", 20), ("wolf", "xeno", 10)]
_ids = itertools.count()

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is missing")


def pct(share: float) -> str:
    return f"{100 * share:.1f}%"


async def test_sampling_block_shows_shares_against_uniform(
    live_stack: dict[str, ServiceProcess], tmp_path: Path
) -> None:
    async with (httpx.AsyncClient(base_url=live_stack["ingest"].url, timeout=30) as ingest,
                httpx.AsyncClient(base_url=live_stack["api"].url, timeout=30) as api):
        for model, (org, license_) in MODELS.items():
            r = await ingest.post("/v1/admin/models", headers=ADMIN, json={
                "id": model, "organization": org, "license": license_})
            assert r.status_code == 201, r.text
        votes = [{"vote_id": f"bs{next(_ids)}", "arena": "text", "model_a": a, "model_b": b,
                  "winner": "model_a" if i % 3 else "model_b"}
                 for a, b, n in PAIRS for i in range(n)]
        assert (await ingest.post("/v1/votes/batch", json=votes)).status_code == 202
        total = sum(n for _, _, n in PAIRS)

        async def report_of_all() -> dict[str, Any] | None:
            r = await api.get("/v1/leaderboards/text/overall/sampling")
            doc: dict[str, Any] = r.json()
            return doc if r.status_code == 200 and doc["recent"]["battles"] == total else None

        report = await wait_until(report_of_all, 30, f"{total} votes in the report")

        async with async_playwright() as pw:
            browser = await pw.chromium.launch_persistent_context(
                str(tmp_path / "profile"), executable_path=CHROMIUM, headless=True, args=ARGS,
                viewport={"width": 1280, "height": 800})
            try:
                page = await browser.new_page()
                errors: list[str] = []
                page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
                page.on("pageerror", lambda e: errors.append(str(e)))
                failed: list[str] = []
                page.on("response", lambda r: failed.append(r.url) if r.status >= 400 else None)
                await page.goto(live_stack["api"].url + "/?board=text/overall")
                section = page.locator("#sampling")
                await expect(section).to_be_visible(timeout=20_000)
                await expect(page.locator("#smp-recent-battles")).to_have_text(str(total))
                await expect(page.locator("#smp-meta")).to_contain_text(
                    f"{total} battles all time")
                await expect(page.locator("#smp-meta")).to_contain_text("last 24 h")

                # every organization and license, with the report's shares; all votes are
                # recent, so the window's share is the all-time share; they add up to 100%
                for table, groups in (("#smp-orgs", report["organizations"]),
                                      ("#smp-licenses", report["licenses"])):
                    rows = page.locator(f"{table} tbody tr")
                    await expect(rows).to_have_count(len(groups))
                    for group in groups:
                        row = page.locator(f'{table} tbody tr[data-name="{group["name"]}"]')
                        await expect(row.locator(".smp-all")).to_have_text(pct(group["share"]))
                        await expect(row.locator(".smp-recent")).to_have_text(
                            pct(group["share"]))
                        await expect(row.locator(".smp-uniform")).to_have_text(
                            pct(group["uniform_share"]))
                    shown = [float(t.rstrip("%")) for t in
                             await page.locator(f"{table} .smp-all").all_text_contents()]
                    assert sum(shown) == pytest.approx(100, abs=0.2)
                northwind = page.locator('#smp-orgs tbody tr[data-name="Northwind"]')
                # ursa 80 + vega 90 of 240 appearances, against 2 of 4 models
                await expect(northwind.locator(".smp-all")).to_have_text("70.8%")
                await expect(northwind.locator(".smp-uniform")).to_have_text("50.0%")
                # the models: most sampled first, least sampled last
                names = await page.locator("#smp-models tbody tr").evaluate_all(
                    "rows => rows.map(r => r.dataset.name)")
                assert names == ["vega", "ursa", "wolf", "xeno"]
                # every table fits its block (no scrolling inside it) from a laptop's width up
                for width, height in ((1280, 800), (1920, 1080)):
                    await page.set_viewport_size({"width": width, "height": height})
                    cut = await page.evaluate("""() => [...document.querySelectorAll(
                        '#sampling .table-wrap')].filter(w => w.scrollWidth > w.clientWidth + 1)
                        .map(w => w.firstElementChild.id)""")
                    assert cut == [], (width, cut)
                await page.set_viewport_size({"width": 1280, "height": 800})
                ARTIFACTS.mkdir(exist_ok=True)
                await section.scroll_into_view_if_needed()
                await page.screenshot(path=str(ARTIFACTS / "sampling.png"), full_page=True)
                failed = [u for u in failed if not u.endswith("/favicon.ico")]
                assert failed == [], failed
                assert errors == [], errors
            finally:
                await browser.close()
