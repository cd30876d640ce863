"""A real headless Chromium loads the page, sees the table, and sees a rank change arrive live."""

from __future__ import annotations

import itertools
import re
import shutil
from pathlib import Path

import httpx
import pytest
from playwright.async_api import async_playwright, expect

from tests.support.infra import ADMIN_TOKEN
from tests.support.processes import ARTIFACTS, ServiceProcess

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
_ids = itertools.count()

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is missing")


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
            browser = await pw.chromium.launch_persistent_context(
                str(tmp_path / "profile"), executable_path=CHROMIUM, headless=True, args=ARGS,
                viewport={"width": 1280, "height": 800})
            try:
                page = await browser.new_page()
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
                await expect(page.locator("#chart svg")).to_be_visible(timeout=10_000)
                await expect(page.locator("#heatmap tr.me")).to_be_visible(timeout=10_000)
                await page.screenshot(path=str(ARTIFACTS / "model-page.png"), full_page=True)
            finally:
                await browser.close()
