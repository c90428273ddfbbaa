"""The playbook a team edits, and the policy that keeps the sidebar calm."""

import subprocess
import sys

import pytest

from coach.events import PromptClearedEvent, PromptEvent, SignalEvent
from coach.playbook import SIGNALS, PlaybookError, PromptPolicy, load_playbook


def signal(label, at, speaker="agent"):
    return SignalEvent(at, label, speaker, at - 1, at, 0.9, "evidence")


def test_the_default_playbook_is_valid_and_covers_every_signal():
    book = load_playbook()
    assert set(book.prompts) == set(SIGNALS)
    assert book.prompts["over_explaining"].kind == "stop_sign"
    assert book.prompts["not_listening"].kind == "stop_sign"
    text = book.prompts["escalation_request"].text.lower()
    assert all(word in text for word in ("defuse", "details", "empathise", "call-back", "never say there is no manager"))


@pytest.mark.parametrize(
    "yaml_text, message",
    [
        ("prompts:\n  over_explaning: {kind: stop_sign, title: t, text: x, priority: 1, cooldown: 1}", "did you mean over_explaining"),
        ("prompts:\n  abuse: {kind: shout, title: t, text: x, priority: 1, cooldown: 1}", "prompts.abuse.kind"),
        ("prompts:\n  abuse: {kind: deescalate, title: t, text: x, priority: 1, cooldown: -5}", "prompts.abuse.cooldown"),
        ("prompts:\n  abuse: {kind: deescalate, title: t, text: x, priority: 1}", "prompts.abuse.cooldown: Field required"),
        ("prompts: [oops", "not valid YAML at line 1"),
    ],
)
def test_mistakes_in_the_playbook_are_named_where_they_are(tmp_path, yaml_text, message):
    path = tmp_path / "playbook.yaml"
    path.write_text(yaml_text)
    with pytest.raises(PlaybookError, match=message):
        load_playbook(path)


def test_playbook_check_is_a_command_with_a_one_line_verdict(tmp_path):
    ok = subprocess.run([sys.executable, "-m", "coach", "playbook", "check"], capture_output=True, text=True)
    assert ok.returncode == 0 and "OK, 12 prompts" in ok.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("prompts:\n  abuse: {kind: shout, title: t, text: x, priority: 1, cooldown: 1}")
    run = subprocess.run([sys.executable, "-m", "coach", "playbook", "check", str(bad)], capture_output=True, text=True)
    assert run.returncode == 1 and "prompts.abuse.kind" in run.stderr and "Traceback" not in run.stderr


def test_a_prompt_is_not_repeated_within_its_cooldown():
    policy = PromptPolicy(load_playbook())
    first = policy.on_signals([signal("dismissive_phrase", 10.0)])
    again = policy.on_signals([signal("dismissive_phrase", 20.0)])  # cooldown 30 s
    later = policy.on_signals([signal("dismissive_phrase", 45.0)])
    assert [p.title for p in first] == ["Say what you can do"] and again == [] and len(later) == 1


def test_signals_that_arrive_together_are_shown_most_urgent_first():
    policy = PromptPolicy(load_playbook())
    shown = policy.on_signals([signal("repeat_contact", 5.0, "customer"), signal("escalation_request", 5.0, "customer")])
    assert [p.signals for p in shown] == [["escalation_request"], ["repeat_contact"]]


def test_one_stop_sign_at_a_time_until_the_agent_stops_talking():
    policy = PromptPolicy(load_playbook())
    (sign,) = policy.on_signals([signal("over_explaining", 35.0)])
    assert isinstance(sign, PromptEvent) and sign.kind == "stop_sign"
    assert policy.on_signals([signal("interruption", 36.0)]) == []  # less urgent: the sign stays as it is
    assert policy.on_activity(36.5, agent_speaking=True) == []  # still talking: the sign stays
    (cleared,) = policy.on_activity(38.0, agent_speaking=False)
    assert isinstance(cleared, PromptClearedEvent) and cleared.id == sign.id
    assert policy.on_activity(39.0, agent_speaking=False) == []


def test_a_more_urgent_stop_sign_replaces_the_one_up():
    policy = PromptPolicy(load_playbook())
    (first,) = policy.on_signals([signal("interruption", 10.0)])
    cleared, second = policy.on_signals([signal("not_listening", 11.0, "customer")])
    assert cleared.id == first.id and second.title == "Stop and check in"


def test_the_settings_name_their_defaults_without_importing_a_detector():
    """Defaults are data (coach/defaults.py): reading the settings pulls in no detector, and the
    built-in trigger labels named there are those the phrase rules detect."""
    import subprocess
    import sys

    from coach.defaults import TRIGGER_LABELS
    from coach.detect.triggers import RULES

    code = ("import sys, coach.config; print(sorted(m for m in sys.modules if m.startswith('coach.detect') or m in "
            "('coach.models', 'coach.playbook', 'coach.asr.transcriber')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    assert set(TRIGGER_LABELS) == {rule.label for rule in RULES}
    # and the detectors do not reach back into coach.models: the models module loads them, not the other way
    code = "import sys, coach.detect.text, coach.detect.sentiment; print('coach.models' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"
