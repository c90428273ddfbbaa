"""A team's own signals in the playbook (issue 32): phrases with a safe wildcard, the "not said"
compliance kind, `coach playbook check`, `coach analyze` with COACH_PLAYBOOK, and a running server
taking an edited playbook (and keeping the old one while the new one is invalid)."""

import asyncio
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from coach.detect.custom import CustomSignals, UnsafePhrase, compile_phrase
from coach.events import TranscriptEvent
from coach.playbook import DEFAULT_PLAYBOOK
from coach.simulate import play_call
from tests.live import ADMIN, running_server
from tests.test_server import ESCALATION

ROOT = Path(__file__).resolve().parent.parent


def final(speaker: str, text: str, start: float, end: float, n: int = 1) -> TranscriptEvent:
    return TranscriptEvent(end + 0.7, speaker, f"{speaker}-{n}", start, end, text, True)


def test_phrases_match_whole_words_with_a_trailing_or_lone_wildcard():
    def hits(phrase: str, text: str) -> bool:
        from coach.detect.custom import words

        return compile_phrase(phrase).find(words(text)) is not None

    assert hits("British Gas", "I'm going back to british gas, they were cheaper")
    assert hits("cancel*", "What's the cancellation fee?") and hits("cancel*", "I want to CANCEL")
    assert not hits("gas", "the gasket is broken")  # whole words only
    assert hits("cheaper * else*", "it's cheaper somewhere elsewhere") and not hits("cheaper * else*", "it's cheaper elsewhere")
    assert hits("husband passed away", "My husband passed away in May.")
    assert hits("opt out", "I want to opt-out") and hits("opt-out", "can I opt out")  # a hyphen breaks words
    assert hits("can't afford", "I can\u2019t afford it")  # a curly apostrophe is a straight one


@pytest.mark.parametrize("phrase, why", [
    ("*", "would match any words"), ("* *", "would match any words"), ("(a+)+$", "is not a word"), ("ca*", "too many words"),
    ("a*b", "is not a word"), ("one two three four five six seven eight nine", "more than 8 words"), ("", "empty"),
    ("opt ' out", "is not a word"),
])
def test_unsafe_phrases_are_refused_with_the_reason(phrase, why):
    with pytest.raises(UnsafePhrase, match=why.replace("(", r"\(").replace("+", r"\+")):
        compile_phrase(phrase)


def test_a_not_said_signal_fires_when_its_window_closes_and_not_when_the_phrase_came_in_time():
    from coach.playbook import SignalRule

    rule = SignalRule(speaker="agent", kind="not_said", phrases=["call is recorded", "recorded for * purposes"], within=30).compiled("no_disclosure")
    quiet = CustomSignals([rule])
    quiet.on_transcript(final("agent", "Hello, this call is recorded for training purposes.", 1.0, 4.0))
    assert quiet.tick(31.0) == [] and quiet.close(60.0) == []
    missed = CustomSignals([rule])
    missed.on_transcript(final("agent", "Hello, how can I help?", 1.0, 3.0))
    assert missed.tick(29.9) == []
    assert missed.tick(30.5, waiting_since=28.0) == []  # the agent's words from before 30 s still wait for their final
    [signal] = missed.tick(31.0)
    assert (signal.label, signal.at, signal.speaker) == ("no_disclosure", 31.0, "agent") and "first 30 s" in signal.evidence
    assert missed.tick(40.0) == []  # once
    late = CustomSignals([rule])
    late.on_transcript(final("agent", "Sorry, I should say this call is recorded.", 35.0, 38.0))  # said, but too late
    assert [s.label for s in late.tick(40.0)] == ["no_disclosure"]
    short = CustomSignals([rule])
    assert short.close(12.0) == []  # a call that ended inside the window (the customer hung up) is not flagged
    assert [s.at for s in CustomSignals([rule]).close(45.0)] == [45.0]  # one that went past it without the phrase is
    raced = CustomSignals([rule])  # the final is made, and the window closes while the text models still read it
    raced.heard_final(final("agent", "This call is recorded.", 27.0, 29.5))
    assert raced.tick(31.0) == []


def check(tmp_path: Path, text: str) -> subprocess.CompletedProcess:
    book = tmp_path / "playbook.yaml"
    book.write_text(textwrap.dedent(text))
    return subprocess.run([sys.executable, "-m", "coach", "playbook", "check", str(book)], capture_output=True, text=True, cwd=ROOT)


def test_playbook_check_refuses_each_problem_in_a_readable_line(tmp_path):
    out = check(tmp_path, """
        signals:
          competitor_mentioned: {speaker: customer, phrases: ["octopus", "(a+)+"], colour: red}
          empty_one: {speaker: customer}
        prompts:
          competitor_mentioned: {kind: deescalate, title: Competitor, text: Hold on to them, priority: 60, cooldown: 60}
          refund_asked: {kind: deescalate, title: Refund, text: Check the order, priority: 50, cooldown: 60}
        """)
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert any("competitor_mentioned.phrases" in line and "'(a+)+'" in line for line in lines)
    assert any("competitor_mentioned.colour" in line for line in lines)  # an unknown key
    assert any("empty_one" in line and "needs phrases" in line for line in lines)
    # a prompt for a signal that does not exist is checked once the signals themselves are valid
    ok_signals = check(tmp_path, """
        signals:
          competitor_mentioned: {speaker: customer, phrases: ["octopus"]}
        prompts:
          refund_asked: {kind: deescalate, title: Refund, text: Check the order, priority: 50, cooldown: 60}
        """)
    assert ok_signals.returncode != 0 and "a prompt for unknown signal 'refund_asked'" in ok_signals.stderr
    twice = check(tmp_path, """
        signals:
          competitor_mentioned: {speaker: customer, phrases: ["octopus"]}
          competitor_mentioned: {speaker: customer, phrases: ["british gas"]}
        prompts: {}
        """)
    assert twice.returncode != 0 and "'competitor_mentioned' is written twice" in twice.stderr
    (tmp_path / "latin1.yaml").write_bytes("prompts: {}\n# caf\xe9\n".encode("latin-1"))
    latin = subprocess.run([sys.executable, "-m", "coach", "playbook", "check", str(tmp_path / "latin1.yaml")], capture_output=True, text=True, cwd=ROOT)
    assert latin.returncode != 0 and "not UTF-8" in latin.stderr and "Traceback" not in latin.stderr


def team_playbook(tmp_path: Path) -> Path:
    book = yaml.safe_load(DEFAULT_PLAYBOOK.read_text())
    book["signals"] = {
        "refund_asked": {"speaker": "customer", "phrases": ["refund*", "money back"]},
        "competitor_mentioned": {"speaker": "customer", "phrases": ["octopus", "british gas"]},
        "no_disclosure": {"speaker": "agent", "kind": "not_said", "phrases": ["call is recorded"], "within": 5},
        "double_payment": {"speaker": "customer", "examples": ["I've been charged twice for an order and I want my money back.",
                                                               "You charged me two times for the same purchase, I need it returned."],
                           "not": ["I paid my bill twice this year."]},  # by meaning only
    }
    book["prompts"]["refund_asked"] = {"kind": "deescalate", "title": "Refund asked", "text": "Confirm the order first.", "priority": 40, "cooldown": 60}
    book["switched_off"] = ["churn_threat.exit_fee"]
    out = tmp_path / "team-playbook.yaml"
    out.write_text(yaml.safe_dump(book))
    return out


@pytest.mark.model
def test_a_teams_signal_fires_in_coach_analyze_on_speech_and_another_stays_quiet(short_call, tmp_path):
    path, _ = short_call  # the customer: "I was charged twice for my order and I would like a refund please."
    env = {**os.environ, "COACH_PLAYBOOK": str(team_playbook(tmp_path))}
    run = subprocess.run([sys.executable, "-m", "coach", "analyze", str(path), "--jsonl"], capture_output=True, text=True, env=env, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    events = [json.loads(line) for line in run.stdout.splitlines()]
    signals = {e["label"]: e for e in events if e["type"] == "signal"}
    assert signals["refund_asked"]["speaker"] == "customer" and "refund" in signals["refund_asked"]["evidence"]
    assert "competitor_mentioned" not in signals
    assert signals["double_payment"]["speaker"] == "customer" and "charged twice" in signals["double_payment"]["evidence"]  # by meaning
    assert signals["no_disclosure"]["at"] >= 5.0  # the agent never said the call is recorded
    assert any(e["type"] == "prompt" and e["title"] == "Refund asked" for e in events)


async def _playbook_state(live, changed_since: float | None = None, error: bool = False) -> dict:
    for _ in range(200):  # the server checks the file every second; polled, with a bound
        status, book = await live.request("GET", "/api/playbook")
        assert status == 200
        if (changed_since is None or book["loaded_at"] > changed_since) and (not error or book["error"]):
            return book
        await asyncio.sleep(0.05)
    raise AssertionError("the playbook was not picked up")


async def test_a_running_server_uses_an_edited_playbook_and_keeps_it_while_an_edit_is_invalid(tmp_path):
    book = team_playbook(tmp_path)
    async with running_server(tmp_path / "data", playbook=book) as live:
        first = await _playbook_state(live)
        assert "refund_asked" in first["signals"] and first["error"] is None
        edited = yaml.safe_load(book.read_text())
        edited["prompts"]["escalation_request"]["title"] = "Offer a call-back"
        book.write_text(yaml.safe_dump(edited))
        await _playbook_state(live, changed_since=first["loaded_at"])
        await play_call(live.url, ESCALATION, token=ADMIN, call_id="PB1", speed=0)
        status, call = await live.request("GET", "/api/calls/PB1")
        assert any(e["type"] == "prompt" and e["title"] == "Offer a call-back" for e in call["events"])  # the edit is in use
        good = book.read_text()
        book.write_text(good.replace("priority: 80", "priority: high"))
        refused = await _playbook_state(live, error=True)
        assert "priority" in refused["error"] and refused["prompts"]["escalation_request"]["title"] == "Offer a call-back"
        await play_call(live.url, ESCALATION, token=ADMIN, call_id="PB2", speed=0)
        status, call = await live.request("GET", "/api/calls/PB2")
        assert any(e["type"] == "prompt" and e["title"] == "Offer a call-back" for e in call["events"])  # the old one stays
        # the flag names the rule that raised it; a team that switches that rule off no longer gets it
        flag = next(e for e in call["events"] if e["type"] == "signal" and e["label"] == "escalation_request")
        assert flag["rule"].startswith("escalation_request.")
        edited["switched_off"] = [flag["rule"]]
        book.write_text(yaml.safe_dump(edited))
        assert flag["rule"] in (await _playbook_state(live, changed_since=refused["loaded_at"]))["switched_off"]
        await play_call(live.url, ESCALATION, token=ADMIN, call_id="PB3", speed=0)
        status, call = await live.request("GET", "/api/calls/PB3")
        assert [e for e in call["events"] if e["type"] == "signal" and e["label"] == "escalation_request"] == []


async def test_try_a_sentence_says_what_would_fire_and_why(tmp_path):
    async with running_server(tmp_path / "data", playbook=team_playbook(tmp_path)) as live:
        status, result = await live.request("POST", "/api/playbook/try", body={"speaker": "customer", "text": "I want a refund or I'm off to Octopus"})
        assert status == 200
        fired = {s["label"]: s for s in result["signals"]}
        assert fired["refund_asked"]["fires"] and fired["refund_asked"]["prompt"]["title"] == "Refund asked"
        assert fired["competitor_mentioned"]["fires"] and fired["competitor_mentioned"]["prompt"] is None  # no prompt written for it
        status, result = await live.request("POST", "/api/playbook/try", body={"speaker": "agent", "text": "Sorry, I shouldn't have said calm down."})
        calm = next(s for s in result["signals"] if s["label"] == "dismissive_phrase")
        assert not calm["fires"] and "veto dismissive_phrase.sorry_for_calm_down" in calm["why_not"] and calm["rule"] == "dismissive_phrase.calm_down"
        # a built-in pattern this playbook switched off says so
        status, result = await live.request("POST", "/api/playbook/try", body={"speaker": "customer", "text": "What's the exit fee on this plan?"})
        fee = next(s for s in result["signals"] if s["rule"] == "churn_threat.exit_fee")
        assert not fee["fires"] and fee["why_not"] == "switched off in this playbook" and fee["prompt"] is None
        agent = await live.token("agent", "ana")
        assert (await live.request("POST", "/api/playbook/try", token=agent, body={"speaker": "agent", "text": "hello"}))[0] == 403


def test_examples_fire_by_nearness_unless_a_near_miss_is_nearer():
    from coach.detect.custom import match_meaning, meaning_banks

    axes = {"exit fee": [1, 0, 0], "late fee": [0, 1, 0], "weather": [0, 0, 1]}

    def embed(texts):
        import numpy as np

        return np.array([axes[t] for t in texts], np.float32)

    [bank] = meaning_banks([("fee_asked", "customer", ["exit fee"], ["late fee"], 0.5)], embed)
    import numpy as np

    near_exit = np.array([[0.8, 0.6, 0.0]], np.float32)  # 0.8 to the example, 0.6 to the near miss
    near_late = np.array([[0.6, 0.8, 0.0]], np.float32)
    [m] = match_meaning([bank], "customer", ["what would it cost to leave"], near_exit)
    assert (m.label, m.exemplar, round(m.score, 2)) == ("fee_asked", "exit fee", 0.8)
    assert match_meaning([bank], "customer", ["why the late charge"], near_late) == []  # nearer the near miss
    assert match_meaning([bank], "agent", ["what would it cost to leave"], near_exit) == []  # not this signal's speaker
    assert match_meaning([bank], "customer", ["nice day"], np.array([[0.3, 0.0, 0.95]], np.float32)) == []  # below the threshold


async def test_try_says_a_line_fires_because_the_veto_that_kept_it_quiet_is_switched_off(tmp_path):
    book = yaml.safe_load(DEFAULT_PLAYBOOK.read_text())
    book["switched_off"] = ["dismissive_phrase.sorry_for_calm_down"]
    path = tmp_path / "playbook.yaml"
    path.write_text(yaml.safe_dump(book))
    async with running_server(tmp_path / "data", playbook=path) as live:
        status, result = await live.request("POST", "/api/playbook/try", body={"speaker": "agent", "text": "Sorry, I shouldn't have said calm down."})
        calm = next(s for s in result["signals"] if s["label"] == "dismissive_phrase")
        assert calm["fires"] and calm["rule"] == "dismissive_phrase.calm_down" and "switched off" in calm["why_not"]
        assert calm["prompt"]["title"] == book["prompts"]["dismissive_phrase"]["title"]
