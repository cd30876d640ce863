"""The page's "Show deprecated" toggle in a real headless Chromium: a deprecated model is not in
the table until the toggle is on, then it is, tagged, and the URL keeps the choice."""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx
import pytest
from playwright.async_api import async_playwright, expect

from tests.support.infra import ADMIN_TOKEN
from tests.support.processes import ServiceProcess
from tests.support.wait import wait_until

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is missing")


async def test_show_deprecated_toggle(live_stack: dict[str, ServiceProcess], tmp_path: Path
                                      ) -> None:
    api_url = live_stack["api"].url
    async with httpx.AsyncClient(base_url=live_stack["ingest"].url, timeout=30) as ingest:
        votes = [{"vote_id": f"t{i}", "arena": "text", "model_a": a, "model_b": b,
                  "winner": "model_a" if i % 3 else "tie"}
                 for i, (a, b) in enumerate([("orion", "lyra"), ("lyra", "vela"),
                                             ("vela", "orion")] * 20)]
        assert (await ingest.post("/v1/votes/batch", json=votes)).status_code == 202
        r = await ingest.patch("/v1/admin/models/vela", json={"deprecated": True},
                               headers={"authorization": f"Bearer {ADMIN_TOKEN}"})
        assert r.status_code == 200, r.text

    async with httpx.AsyncClient(base_url=api_url, timeout=10) as api:
        async def hidden() -> bool:
            r = await api.get("/v1/leaderboards/text/overall")
            return r.status_code == 200 and [m["model"] for m in r.json()["rows"]] in (
                ["orion", "lyra"], ["lyra", "orion"])

        await wait_until(hidden, 30, "vela counted, then hidden from the default board")

    async with async_playwright() as pw:
        browser = await pw.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=CHROMIUM, headless=True, args=ARGS,
            viewport={"width": 1280, "height": 800})
        try:
            page = await browser.new_page()
            await page.goto(api_url + "/?board=text/overall")
            rows = page.locator("#standings tbody tr")
            await expect(rows).to_have_count(2, timeout=20_000)
            vela = page.locator('#standings tbody tr[data-model="vela"]')
            await expect(vela).to_have_count(0)
            await page.locator("#f-include_deprecated").check()
            await expect(vela).to_have_count(1, timeout=10_000)
            await expect(vela).to_contain_text("deprecated")
            assert "include_deprecated=true" in page.url
            await page.reload()
            await expect(page.locator("#f-include_deprecated")).to_be_checked()
            await expect(vela).to_have_count(1, timeout=10_000)
        finally:
            await browser.close()
