"""End to end on generated speech: an angry customer asks for someone higher up, then calms down.
The whole stream: sentiment on finals, the signal with its evidence, the prompt, the risk."""

import json
import subprocess
import sys

import pytest

from coach.demo import Turn, synthesize_call, write_wav

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def escalating_call(tmp_path_factory):
    turns = (
        Turn("agent", "Thanks for calling, this is Sam. How can I help?", 0.5),
        Turn("customer", "This is an absolute disgrace. Is there anybody higher up who can actually sort this out?"),
        Turn("agent", "I understand. Let me take the details and arrange a call back at a time that suits you."),
        Turn("customer", "Okay, thank you, that's really helpful."),
    )
    stereo, timeline = synthesize_call(turns)
    path = write_wav(tmp_path_factory.mktemp("calls") / "escalating.wav", stereo)
    run = subprocess.run([sys.executable, "-m", "coach", "analyze", str(path), "--jsonl"], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    return [json.loads(line) for line in run.stdout.splitlines()], timeline


def test_every_final_carries_a_sentiment_and_the_angry_turn_reads_lower(escalating_call):
    events, timeline = escalating_call
    finals = [e for e in events if e["type"] == "transcript" and e["final"] and e["text"]]
    assert finals and all(-1 <= e["sentiment"] <= 1 for e in finals)
    customer = [e for e in finals if e["speaker"] == "customer"]
    angry = [e for e in customer if e["end"] <= timeline[1]["end"] + 0.5]
    pleased = [e for e in customer if e["start"] >= timeline[3]["start"] - 0.5]
    assert max(e["sentiment"] for e in angry) < min(e["sentiment"] for e in pleased)


def test_the_request_for_someone_above_is_caught_prompted_and_raises_the_risk(escalating_call):
    events, timeline = escalating_call
    signals = [e for e in events if e["type"] == "signal" and e["label"] == "escalation_request"]
    assert signals and signals[0]["speaker"] == "customer" and signals[0]["evidence"]
    assert signals[0]["at"] - timeline[1]["end"] < 1.5  # within the finals' lag plus the text models
    prompts = [e for e in events if e["type"] == "prompt" and "escalation_request" in e["signals"]]
    assert prompts and prompts[0]["kind"] == "deescalate"
    risks = [e for e in events if e["type"] == "risk" and e["at"] >= signals[0]["at"]]
    assert risks and risks[0]["score"] > 0 and "escalation_request" in risks[0]["drivers"]
