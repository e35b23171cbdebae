"""The page in a real browser (Playwright driving Debian's Chromium): log in,
a value changing without a reload, confirming an alert, the unreachable
banner, phone screenshots kept under build/test-artifacts/web/.

Skipped when Playwright or /usr/bin/chromium is missing (`.ci/run` installs both).
"""

from __future__ import annotations

import copy
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer
from helpers_web import PASSWORDS, farm_status, user_store
from test_web_alerts import Backend

from agent.web import WebAccess, make_web_app

CHROMIUM = Path(os.environ.get("DAIRY_EDGE_CHROMIUM", "/usr/bin/chromium"))
ARTIFACTS = Path(__file__).resolve().parents[1] / "build" / "test-artifacts" / "web"
PHONE = {"width": 390, "height": 844}

playwright_api = pytest.importorskip("playwright.async_api")
expect = playwright_api.expect
pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason=f"no Chromium at {CHROMIUM}")


class Farm:
    """A status the test changes, and alerts the page can act on."""

    def __init__(self) -> None:
        self.status = farm_status(cows=120, devices=20, alerts=2)
        # vision sections too: their tables must not widen the page on a phone
        self.status["cameras"] = [{"id": "lane1", "role": "eartag", "state": "online",
                                   "fps": 4.6, "last_error": ""}]
        self.status["models"] = {"bcs_depth": {"version": "synth-depth-s20261202-c300",
                                               "state": "active"}}
        self.status["identifications"] = [
            {"tag_number": "9433", "animal_id": "NL989547535", "status": "flagged",
             "flags": ["not_in_register"], "confidence": 1.0, "camera_id": "lane1"}]
        self.backend = FarmBackend(self)

    def __call__(self) -> dict[str, Any]:
        data = copy.deepcopy(self.status)
        data["open_alerts"] = self.backend.open_alerts()
        return data


class FarmBackend(Backend):
    def __init__(self, farm: Farm) -> None:
        super().__init__()
        self.alerts = {a["record_id"]: a["rule"] for a in farm.status["alerts"]}

    def open_alerts(self) -> list[dict[str, Any]]:
        return [{"alert_id": k, "rule": r, "severity": "critical" if k == "alert0" else "warning",
                 "subject": f"NL-100{k[-1]}", "message": "conductivity up 31 % on LF",
                 "acknowledged": k in self.verdicts or k in self.acked,
                 "snoozed": k in self.snoozed, "verdict": self.verdicts.get(k)}
                for k, r in self.alerts.items()]


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[tuple[str, Farm]]:
    farm = Farm()
    access = WebAccess(users=user_store(tmp_path))
    app = make_web_app(farm, alerts=farm.backend, access=access, gateway="barn-gw-1",
                       poll_s=0.5)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield f"http://127.0.0.1:{server.port}", farm
    finally:
        await server.close()


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    async with playwright_api.async_playwright() as pw:
        chromium = await pw.chromium.launch(executable_path=str(CHROMIUM),
                                            args=["--no-sandbox"])
        try:
            yield chromium
        finally:
            await chromium.close()


async def _log_in(page: Any, base: str, user: str = "tech") -> None:
    await page.goto(base + "/")
    assert page.url.endswith("/login")
    await page.fill("#user", user)
    await page.fill("#password", PASSWORDS[user])
    await page.click("button[type=submit]")
    await page.wait_for_selector("#view")


async def test_log_in_live_value_confirm_and_banner(site: tuple[str, Farm], browser: Any) -> None:
    base, farm = site
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    context = await browser.new_context(viewport=PHONE, device_scale_factor=2,
                                        is_mobile=True, has_touch=True)
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    await _log_in(page, base)
    assert await page.inner_text("h1") == "barn-gw-1"
    await page.screenshot(path=str(ARTIFACTS / "phone-top.png"))
    await page.screenshot(path=str(ARTIFACTS / "phone-full.png"), full_page=True)
    # Alerts come first on the first screen, with their buttons.
    box = await page.locator("#alerts").bounding_box()
    assert box is not None and box["y"] < PHONE["height"] / 2
    # No word or number broken on a phone: nothing wider than the screen.
    width = await page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"page is {width} px wide on a {PHONE['width']} px phone"

    # A live value change, without a reload.
    await page.evaluate("window.__marker = 'same page'")
    tank = farm.status["sensors"][0]
    tank["values"]["milk_temp_c"] = 7.31
    await expect(page.locator("#tanks")).to_contain_text("7.3", timeout=10_000)
    assert await page.evaluate("window.__marker") == "same page"
    assert "updated" in await page.inner_text("#updated")

    # Confirm an alert: the result shows at once and stays after the next poll.
    card = page.locator("#alert-alert0")
    await card.get_by_role("button", name="Confirm").click()
    await card.locator(".chip.ok").wait_for()
    assert farm.backend.verdicts == {"alert0": "confirmed"}
    # after the next poll: from the server, the verdict and no buttons any more
    await expect(card.locator("form.act")).to_have_count(0, timeout=10_000)
    await expect(card.locator(".chip.ok")).to_have_text("confirmed", timeout=10_000)
    assert "confirmed" in await card.inner_text()
    await page.screenshot(path=str(ARTIFACTS / "phone-confirmed.png"))

    # The gateway drops off the Wi-Fi: the last data stays, with a banner.
    await page.route("**/api/view*", lambda route: route.abort())
    await page.wait_for_selector("#banner:not([hidden])", timeout=10_000)
    text = await page.inner_text("#banner")
    assert text.startswith("gateway unreachable, last data ")
    assert "7.3" in await page.inner_text("#tanks")
    await page.screenshot(path=str(ARTIFACTS / "phone-unreachable.png"))
    await page.unroute("**/api/view*")
    await page.wait_for_selector("#banner[hidden]", state="attached", timeout=10_000)
    assert not [e for e in errors if "net::ERR_FAILED" not in e], errors
    await context.close()


async def test_viewer_sees_no_buttons_and_search_works(site: tuple[str, Farm],
                                                       browser: Any) -> None:
    base, _ = site
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    page = await context.new_page()
    await _log_in(page, base, "view")
    assert await page.locator("form.act").count() == 0
    await page.fill("#q", "NL-1042")
    await expect(page.locator("#animals")).to_contain_text("NL-1042", timeout=10_000)
    assert await page.input_value("#q") == "NL-1042"
    await page.screenshot(path=str(ARTIFACTS / "desktop-search.png"), full_page=False)
    await context.close()


async def test_switch_to_bangla(site: tuple[str, Farm], browser: Any) -> None:
    base, farm = site
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    context = await browser.new_context(viewport=PHONE, device_scale_factor=2, is_mobile=True)
    page = await context.new_page()
    await _log_in(page, base)
    await page.get_by_role("link", name="বাংলা").first.click()
    await expect(page.locator("#alerts h2")).to_contain_text("সতর্কতা")
    assert await page.get_attribute("html", "lang") == "bn"
    # live updates and the script's words stay in Bangla
    farm.status["sensors"][0]["values"]["milk_temp_c"] = 4.12
    await expect(page.locator("#tanks")).to_contain_text("৪.১", timeout=10_000)
    await expect(page.locator("#updated")).to_contain_text("হালনাগাদ", timeout=10_000)
    await page.screenshot(path=str(ARTIFACTS / "phone-bangla.png"))
    width = await page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"]
    await context.close()
