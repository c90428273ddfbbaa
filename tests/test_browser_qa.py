"""The QA replay page (/qa) in real headless Chromium against the running app: a stored call's
recording, its flags on a timeline and in a list, the transcript in step with the audio, and a
review saved through the page. Playback itself may be refused in headless Chromium, so the test
only seeks (``currentTime``) and checks what the page does on ``seeking``/``seeked``/``timeupdate``.
The screenshot is kept in ``test-artifacts/browser/qa-replay.png``."""

import pytest

from coach.simulate import play_call
from tests.fakes import silence, stereo
from tests.live import PHRASES, running_server, said
from tests.test_browser import ARTIFACTS, WAIT_MS, browser, open_page, wait_until  # noqa: F401 (browser is a fixture)

pytestmark = pytest.mark.browser

# A greeting, a long complaint, then (5.6 s in) the customer asks for a manager, and the agent answers.
# The jump to 3 s before the request lands inside the complaint.
ESCALATION_LATER = stereo(
    ("agent", said(300)), ("agent", silence(0.6)),
    ("customer", said(400, 2.5)), ("customer", silence(1.0)),
    ("customer", said(500)), ("customer", silence(1.5)),
    ("agent", said(700)), ("agent", silence(1.5)),
)
CALM = stereo(("agent", said(300)), ("agent", silence(1.0)))  # nothing to flag

PLAYER_TIME = "document.getElementById('player').currentTime"
CURRENT_TEXT = "document.querySelector('#transcript .line.current .text')?.textContent"


def transcript_lines(events: list[dict]) -> list[dict]:
    """The final transcript segments (a later final of an utterance replaces the earlier), by start."""
    finals: dict = {}
    for e in events:
        if e["type"] == "transcript" and e["final"]:
            finals[e.get("id", e["seq"])] = e
    return sorted((e for e in finals.values() if e["text"].strip()), key=lambda e: e["start"])


def spoken_at(lines: list[dict], t: float) -> str | None:
    """What is being said at `t`: the line with start <= t < end, or else the last one started before t."""
    started = [e for e in lines if e["start"] <= t]
    inside = [e for e in started if t < e["end"]]
    line = (inside or started or [None])[-1]
    return line and line["text"]


async def test_qa_replays_a_flagged_call_in_step_with_its_transcript_and_saves_a_review(browser, tmp_path):  # noqa: F811
    async with running_server(tmp_path) as live:
        ingest, qa = await live.token("ingest"), await live.token("qa")
        await play_call(live.url, ESCALATION_LATER, token=ingest, call_id="QA1", agent_id="ana", speed=0)
        await play_call(live.url, CALM, token=ingest, call_id="CALM1", agent_id="bo", speed=0)
        status, call = await live.request("GET", "/api/calls/QA1", token=qa)
        assert status == 200 and call["state"] == "ended" and call["has_audio"]
        flag = next(e for e in call["events"] if e["type"] == "signal" and e["label"] == "escalation_request")
        assert flag["start"] > 4  # not at the very start: the jump lands on earlier words
        lines = transcript_lines(call["events"])

        page, errors = await open_page(browser, f"{live.url}/qa?token={qa}", 1280, 800)
        # the list: flagged calls only by default; the filter brings the calm call back
        row = await page.wait_for_selector("#calls .call-row[data-call-id=QA1]", timeout=WAIT_MS)
        await page.wait_for_selector("body[data-state=ready]")
        assert await page.locator("#calls .call-row").count() == 1
        assert "Escalation request" in await row.inner_text() and "ana" in await row.inner_text()
        await page.uncheck("#filter-flagged")
        await page.wait_for_selector("#calls .call-row[data-call-id=CALM1]", timeout=WAIT_MS)
        await page.check("#filter-flagged")
        await page.wait_for_selector("#calls .call-row[data-call-id=CALM1]", state="detached", timeout=WAIT_MS)

        # open the call: its recording, the flag on the timeline and in the list, with why it fired
        await page.click("#calls .call-row[data-call-id=QA1]")
        await page.wait_for_selector("#call[data-call-id=QA1]")
        await page.wait_for_selector("#player[data-ready=true]", timeout=WAIT_MS)
        assert "call_id=QA1" in page.url
        item = page.locator(f"#flags .flag[data-seq='{flag['seq']}'][data-label=escalation_request]")
        assert await page.locator(f"#timeline .flag-mark[data-seq='{flag['seq']}']").count() == 1
        assert flag["evidence"] in await item.locator(".evidence").inner_text()
        assert "Supervisor requested" in await item.locator(".prompt-shown").inner_text()

        # jump: 3 s before the flagged words, with the words spoken then highlighted
        target = max(0.0, flag["start"] - 3)
        await item.locator(".jump").click()
        await wait_until(page, f"Math.abs({PLAYER_TIME} - {target}) < 0.3")
        t = await page.evaluate("(() => { const p = document.getElementById('player'); p.pause(); return p.currentTime; })()")
        assert t == pytest.approx(target, abs=0.3)
        expected = spoken_at(lines, t)
        assert expected == PHRASES[400]  # the complaint, before the request
        await wait_until(page, f"{CURRENT_TEXT} === {expected!r}")
        assert await page.locator("#transcript .line.current").count() == 1

        # seek into the request: the highlight follows
        await page.evaluate(f"document.getElementById('player').currentTime = {flag['start'] + 0.2}")
        assert spoken_at(lines, flag["start"] + 0.2) == PHRASES[500]
        await wait_until(page, f"{CURRENT_TEXT} === {PHRASES[500]!r}")
        current = page.locator("#transcript .line.current")
        assert float(await current.get_attribute("data-start")) <= flag["start"] + 0.2 < float(await current.get_attribute("data-end"))
        assert await current.get_attribute("data-speaker") == "customer"

        # review: right, with a note; shown on the page and kept by the server
        await item.locator(".review-note").fill("asked for a manager, clear")
        await item.locator(".review-right").click()
        review = await item.locator(".reviews .review[data-verdict=right]").element_handle(timeout=WAIT_MS)
        assert "asked for a manager, clear" in await review.inner_text()
        status, after = await live.request("GET", "/api/calls/QA1", token=qa)
        assert status == 200
        assert [(r["seq"], r["verdict"], r["note"]) for r in after["reviews"]] == [(flag["seq"], "right", "asked for a manager, clear")]

        await page.screenshot(path=ARTIFACTS / "qa-replay.png")
        assert errors == []
