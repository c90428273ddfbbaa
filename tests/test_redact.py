"""Personal data out of what is stored and what leads and QA see (issue 7).

Unit tests on the redactor's rules (written and spoken numbers, context across turns, the hard
negatives), and one live call through the running app: the lead's view and the store are redacted,
the stored recording is silent where the card number was read, and the agent's raw view (when
configured) keeps the words.
"""

import asyncio
import json

import numpy as np
import pytest
from websockets.asyncio.client import connect

from coach.config import RedactionSettings
from coach.detect.exemplars import ExemplarMatch
from coach.redact import Redactor, redact_text
from coach.simulate import play_call
from tests.fakes import PhraseTranscriber, silence, stereo
from tests.live import ADMIN, running_server, said
from tests.test_server import read_all


def kinds(text: str, topic: str | None = None) -> list[str]:
    return [span.kind for span in redact_text(text, topic)[1]]


@pytest.mark.parametrize("text", [
    "yeah it's 5500 0000 0000 0004",
    "sure, five five zero zero, zero zero zero zero, zero zero zero zero, zero zero zero four",
    "the long number is 3782-822463-10005",
    "six zero one one double zero zero nine triple nine one two four zero four",
    "4 0 1 2 8 8 8 8 8 8 8 8 1 8 8 1",
])
def test_a_card_number_written_or_spoken_is_redacted_without_any_context(text):
    redacted, spans = redact_text(text)
    assert [s.kind for s in spans] == ["card"]
    assert not any(ch.isdigit() for ch in redacted)
    assert "[card number]" in redacted


def test_a_card_read_in_groups_over_several_turns_is_redacted_after_the_agent_asks_for_it():
    calls = Redactor(context_seconds=30)
    assert calls.text("Could I take the number on the front of your Visa?", at=3.0)[1] == []
    first, _ = calls.text("OK, 4929", at=6.0)
    second, _ = calls.text("three eight one two", at=8.5)
    third, _ = calls.text("7715 0042", at=11.0)
    code, _ = calls.text("And the three digits on the back, 417.", at=16.0)
    assert (first, second, third) == ("OK, [card number]", "[card number]", "[card number]")
    assert code == "And the three digits on the back, [card number]."


def test_the_topic_fades_so_later_small_numbers_are_kept():
    calls = Redactor(context_seconds=30)
    calls.text("what's the account number?", at=2.0)
    assert calls.text("it's 8812", at=4.0)[0] == "it's [account number]"
    assert calls.text("I've waited 45 minutes and called 3 times since 2019", at=120.0)[1] == []


@pytest.mark.parametrize("text, kind", [
    ("you can reach me on 07700 900 123", "phone"),
    ("my number is five five five, eight six seven, five three oh nine", "phone"),
    ("my social is 078-05-1120", "id"),
    ("national insurance AB 12 34 56 C", "id"),
    ("send it to maria.lopez@example.org please", "email"),
    ("it's maria dot lopez at example dot org", "email"),
    ("sort code 20-00-00 and account 55779911", "account"),
])
def test_other_personal_data_is_redacted_and_named(text, kind):
    redacted, spans = redact_text(text)
    assert kind in [s.kind for s in spans], redacted
    assert not any(ch.isdigit() for ch in redacted) and "@" not in redacted


@pytest.mark.parametrize("text", [
    "the bill went up by $1,500 this month",
    "I was charged forty five dollars twice",
    "it's been 30 days and I have called 3 times",
    "I've been a customer since 2009",
    "one of your agents said so on the 12th",
    "you should be at the office at 9:30",
])
def test_money_dates_and_counts_are_kept(text):
    assert redact_text(text) == (text, [])


def test_a_percentage_is_kept_even_while_an_account_number_is_being_read():
    assert redact_text("that's 20% off, and the number is 44 72", "account")[0] == "that's 20% off, and the number is [account number]"


def test_a_signals_evidence_is_redacted_too():
    calls = Redactor()
    message = {"type": "signal", "label": "escalation_request", "at": 5.0, "evidence": "manager, my card is 4111 1111 1111 1111"}
    redacted, spans = calls.event(message)
    assert redacted["evidence"] == "manager, my card is [card number]" and message["evidence"].endswith("1111")
    assert calls.event({"type": "risk", "at": 5.0, "score": 10, "drivers": []}) == ({"type": "risk", "at": 5.0, "score": 10, "drivers": []}, [])


def test_an_exemplar_matchs_similarity_is_kept_while_an_account_number_is_being_read():
    calls = Redactor()
    calls.text("What's the account number on the bill?", at=10.0)
    match = ExemplarMatch("escalation_request", 0.9, "It's 44 72, and put your manager on.", "Put your supervisor on.", 0.68)
    redacted, _ = calls.event({"type": "signal", "label": "escalation_request", "at": 12.0, "evidence": match.evidence})
    assert redacted["evidence"] == '"It\'s [account number], and put your manager on." ~ "Put your supervisor on." (similarity 68%)'


CARD_CALL = {
    300: "Can I take the card number please?",
    400: "Yes, it's 4539 1488 0343 6467.",
    500: "And the expiry?",
    600: "Oh nine twenty seven.",
}


async def test_a_live_call_keeps_no_card_number_in_the_store_the_lead_view_or_the_recording(tmp_path):
    call = stereo(
        ("agent", said(300)), ("agent", silence(1.0)), ("customer", said(400, 2.0)), ("customer", silence(1.0)),
        ("agent", said(500)), ("agent", silence(1.0)), ("customer", said(600)), ("customer", silence(1.5)),
    )
    async with running_server(tmp_path, transcriber=PhraseTranscriber(CARD_CALL), redaction=RedactionSettings(agent_view="raw")) as live:
        ingest, lead, agent = await live.token("ingest"), await live.token("lead"), await live.token("agent", "ana")
        sending = asyncio.create_task(play_call(live.url, call, token=ingest, via="twilio", call_id="PCI1", agent_id="ana", speed=0))
        async with connect(f"{live.ws}/ws/board?token={lead}") as board:
            await board.recv()  # the call is live
        async with connect(f"{live.ws}/ws/calls/PCI1?token={lead}") as lead_ws, connect(f"{live.ws}/ws/calls/PCI1?token={agent}") as agent_ws:
            lead_view, agent_view = await asyncio.gather(read_all(lead_ws), read_all(agent_ws))
        await sending
        status, kept = await live.request("GET", "/api/calls/PCI1", token=ADMIN)
        from coach.audio.files import read_blocks

        audio = np.concatenate(list(read_blocks(live.app.state.store.audio_path("PCI1"))))

    def customer_lines(events):
        return [e["text"] for e in events if e["type"] == "transcript" and e["final"] and e["speaker"] == "customer"]

    # the expiry is redacted too: the agent asked for it in the card's context
    assert customer_lines(lead_view) == ["Yes, it's [card number].", "[card number]."]
    assert status == 200 and customer_lines(kept["events"]) == customer_lines(lead_view)
    assert not any("4539" in json.dumps(e) for e in kept["events"] + lead_view)
    assert customer_lines(agent_view) == [CARD_CALL[400], CARD_CALL[600]]  # the agent's own raw view
    # the stored recording: the customer's channel is silent where the card was read; the agent's is not
    rate = 16000
    card = audio[int(3.0 * rate) : int(4.0 * rate)]
    assert np.abs(card[:, 1]).max() == 0.0
    assert np.abs(audio[: int(1.5 * rate), 0]).max() > 0.1  # the agent's question is kept


