"""The pages in real headless Chromium (Debian's ``chromium``, driven by playwright) against the
running app, with calls played in real time. Screenshots are kept in ``test-artifacts/browser/``
(``COACH_TEST_ARTIFACTS`` to move them)."""

import asyncio
import os
from pathlib import Path

import pytest

from coach.simulate import play_call
from tests.fakes import silence, stereo
from tests.live import running_server, said

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(os.environ.get("COACH_TEST_ARTIFACTS", "test-artifacts")) / "browser"
WAIT_MS = 20_000

# the customer says they are not heard (a stop sign while the agent answers), then asks for a manager
UNHEARD_THEN_ESCALATION = stereo(
    ("agent", said(300)), ("agent", silence(0.8)),
    ("customer", said(600)), ("customer", silence(2.5)),
    ("agent", said(700, 2.0)), ("agent", silence(1.0)),
    ("customer", said(500)), ("customer", silence(3.0)),
)
# one call escalates early and then calms; another starts quietly and turns angrier
EARLY_ESCALATION = stereo(("agent", said(300)), ("agent", silence(0.5)), ("customer", said(500)), ("customer", silence(14.0)))
ANGRY_LATER = stereo(
    ("agent", said(300)), ("agent", silence(3.0)),
    ("customer", said(600)), ("customer", silence(1.0)),
    ("customer", said(500)), ("customer", silence(1.0)),
    ("customer", said(600)), ("customer", silence(3.0)),
)


@pytest.fixture
async def browser():
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        pytest.fail("playwright is needed for the browser tests: `make install`")
    if not Path(CHROMIUM).exists():
        pytest.fail("Debian's chromium is needed for the browser tests: `make system-deps`")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    async with async_playwright() as p:
        chromium = await p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
        )
        yield chromium
        await chromium.close()


async def open_page(browser, url: str, width: int, height: int = 800):
    page = await browser.new_page(viewport={"width": width, "height": height})
    errors: list[str] = []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await page.goto(url)
    return page, errors


async def wait_until(page, expression: str, timeout: float = WAIT_MS) -> None:
    """Until ``expression`` is true in the page. Playwright's wait_for_function compiles its predicate
    with eval, which the pages' Content-Security-Policy (rightly) forbids; evaluate is not eval."""
    for _ in range(int(timeout / 50)):
        if await page.evaluate(expression):
            return
        await page.wait_for_timeout(50)  # polling the page for a condition, up to the timeout
    raise AssertionError(f"never true in the page: {expression}")


async def test_sidebar_shows_the_stop_sign_then_a_prompt_card_during_a_live_call(browser, tmp_path):
    async with running_server(tmp_path) as live:
        ingest, agent = await live.token("ingest"), await live.token("agent", "ana")
        page, errors = await open_page(browser, f"{live.url}/sidebar?token={agent}", 380)  # narrow, beside a softphone
        await page.wait_for_selector("#notice:not([hidden])")  # waiting for ana's next call
        call = asyncio.create_task(play_call(live.url, UNHEARD_THEN_ESCALATION, token=ingest, agent_id="ana", speed=1.0))

        stop = await page.wait_for_selector("#stop-sign:not([hidden])", timeout=WAIT_MS)
        assert "check in" in (await stop.inner_text()).lower()
        assert await stop.is_visible() and (await stop.bounding_box())["width"] > 300  # big: the sidebar's width
        await page.screenshot(path=ARTIFACTS / "sidebar-stop-sign.png")

        await page.wait_for_selector("#stop-sign", state="hidden", timeout=WAIT_MS)  # the agent answered and stopped talking
        card = await page.wait_for_selector(".prompt-card[data-kind=deescalate]", timeout=WAIT_MS)
        assert "Supervisor requested" in await card.inner_text()
        await page.screenshot(path=ARTIFACTS / "sidebar-prompt-card.png")

        texts = await page.locator("#transcript .line[data-final=true] .text").all_inner_texts()
        assert "You are not listening to me." in texts and "I want to speak to your manager right now." in texts
        assert int(await page.get_attribute("#risk", "data-score")) > 0
        await call
        await page.wait_for_selector("body[data-state=ended]", timeout=WAIT_MS)
        assert errors == []


async def test_board_reorders_live_calls_by_risk(browser, tmp_path):
    async with running_server(tmp_path) as live:
        ingest, lead = await live.token("ingest"), await live.token("lead")
        page, errors = await open_page(browser, f"{live.url}/board?token={lead}", 1280)
        await page.wait_for_selector("body[data-state=live]")
        early = asyncio.create_task(play_call(live.url, EARLY_ESCALATION, token=ingest, call_id="EARLY", agent_id="ana", speed=1.0))
        await page.wait_for_selector(".call-row[data-call-id=EARLY]:not([data-risk='0'])", timeout=WAIT_MS)
        angry = asyncio.create_task(play_call(live.url, ANGRY_LATER, token=ingest, call_id="HOT", agent_id="bo", speed=1.0))
        await page.wait_for_selector(".call-row[data-call-id=HOT]", timeout=WAIT_MS)
        assert await first_row(page) == "EARLY"  # the new call starts at risk 0, below it
        await page.screenshot(path=ARTIFACTS / "board-before.png")
        await wait_until(
            page,
            "document.querySelector('#calls .call-row').dataset.callId === 'HOT'"
            " && Number(document.querySelector('#calls .call-row').dataset.risk) > 0",
        )
        await page.screenshot(path=ARTIFACTS / "board-after.png")
        rows = page.locator("#calls .call-row")
        assert await rows.count() == 2
        assert int(await rows.nth(0).get_attribute("data-risk")) > int(await rows.nth(1).get_attribute("data-risk"))
        await asyncio.gather(early, angry)
        assert errors == []


async def first_row(page) -> str:
    return await page.locator("#calls .call-row").first.get_attribute("data-call-id")

