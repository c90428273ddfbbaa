"""The playbook page (/playbook) in real headless Chromium: the signals in use with their prompts
and QA precision, the built-in rules with theirs and whether they are on, and a sentence tried
against the playbook. The screenshot is kept in
``test-artifacts/browser/playbook.png``."""

import pytest

from coach.simulate import play_call
from tests.live import running_server
from tests.test_browser import ARTIFACTS, WAIT_MS, browser, open_page, wait_until  # noqa: F401 (browser is a fixture)
from tests.test_custom_signals import team_playbook
from tests.test_server import ESCALATION

pytestmark = pytest.mark.browser


async def test_the_playbook_page_shows_signals_with_precision_and_tries_a_sentence(browser, tmp_path):  # noqa: F811
    async with running_server(tmp_path / "data", playbook=team_playbook(tmp_path)) as live:
        ingest, lead = await live.token("ingest"), await live.token("lead")
        await play_call(live.url, ESCALATION, token=ingest, call_id="PB1", agent_id="ana", speed=0)
        status, call = await live.request("GET", "/api/calls/PB1")
        flag = next(e for e in call["events"] if e["type"] == "signal" and e["label"] == "escalation_request")
        assert (await live.request("POST", "/api/calls/PB1/reviews", body={"seq": flag["seq"], "verdict": "right"}))[0] == 201

        page, errors = await open_page(browser, f"{live.url}/playbook?token={lead}", 1100, 900)
        await page.wait_for_selector("#signals tr[data-label=refund_asked]", timeout=WAIT_MS)
        assert "customer: refund*, money back" in await page.inner_text("#signals tr[data-label=refund_asked]")
        assert await page.inner_text("#signals tr[data-label=escalation_request] .precision") == "100%"  # QA's verdict
        # the same verdict on the rule that raised the flag, and a rule the playbook switched off
        assert await page.inner_text(f'#rules tr[data-rule="{flag["rule"]}"] .precision') == "100%"
        assert "switched off" in await page.inner_text('#rules tr[data-rule="churn_threat.exit_fee"]')
        assert (await page.inner_text("#rules tr:first-child th")) == flag["rule"]  # reviewed rules come first
        assert not await page.is_visible('#rules tr[data-rule="abuse.name_calling"]')  # nothing to act on: on request
        await page.check("#all-rules")
        assert await page.is_visible('#rules tr[data-rule="abuse.name_calling"]')
        await page.uncheck("#all-rules")
        await page.select_option("#speaker", "customer")
        await page.fill("#sentence", "I'd like my money back, honestly")
        await page.click("#try button")
        await wait_until(page, "!!document.querySelector('#verdict li[data-label=refund_asked]')")
        verdict = await page.inner_text("#verdict li[data-label=refund_asked]")
        assert "fires" in verdict and "money back" in verdict and "Refund asked" in verdict
        await page.screenshot(path=str(ARTIFACTS / "playbook.png"), full_page=True)
        assert errors == []
