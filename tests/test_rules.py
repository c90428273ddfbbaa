"""The built-in phrase rules as data (``models/rules.yaml``, issue 32): every pattern fires on its own
lines and names itself, its label stays quiet on its near misses, every veto silences its lines; the
file is refused in one line when a pattern could backtrack or capture; and a playbook switches a
pattern, a veto, a label's meaning or a timing cue off."""

import textwrap

import pytest

from coach.detect.exemplars import ExemplarMatch
from coach.detect.triggers import RulesError, TriggerDetector, built_in, load_rules
from coach.events import TranscriptEvent

BOOK = built_in()
PATTERNS = [p for p in BOOK.patterns if not p.veto]
VETOES = [p for p in BOOK.patterns if p.veto]


def heard(speaker: str, text: str, final: bool = True) -> TranscriptEvent:
    return TranscriptEvent(10.0, speaker, f"{speaker}-1", 7.0, 9.5, text, final)


def fired(speaker: str, text: str, off=(), matches=()) -> dict:
    return {s.label: s for s in TriggerDetector(off).on_transcript(heard(speaker, text), list(matches))}


def test_every_pattern_and_veto_has_an_id_and_lines_that_test_it():
    assert len(PATTERNS) >= 100 and len(VETOES) >= 10
    assert len({p.id for p in BOOK.patterns}) == len(BOOK.patterns)
    untested = [p.id for p in PATTERNS if not (p.fires and p.quiet)] + [v.id for v in VETOES if not v.fires]
    assert untested == []


@pytest.mark.parametrize("pattern", PATTERNS, ids=lambda p: p.id)
def test_a_pattern_fires_on_its_lines_naming_itself_and_its_label_stays_quiet_on_its_near_misses(pattern):
    for line in pattern.fires:
        signal = fired(pattern.speaker, line).get(pattern.label)
        assert signal is not None and signal.rule == pattern.id, line
        assert signal.evidence and signal.evidence.lower() in line.lower()  # the words QA is shown
    for line in pattern.quiet:
        assert pattern.label not in fired(pattern.speaker, line), line
    for line in pattern.misfires:  # known, and written down: a rule that stops misfiring moves the line to quiet
        assert fired(pattern.speaker, line)[pattern.label].rule == pattern.id, line


@pytest.mark.parametrize("veto", VETOES, ids=lambda v: v.id)
def test_a_veto_silences_its_lines_that_a_pattern_matches(veto):
    rule = next(r for r in BOOK.rules() if r.label == veto.label)
    for line in veto.fires:
        assert rule.search(line) is not None, f"no pattern matches, so the veto is not tested: {line}"
        assert rule.vetoed(line) == veto.id and veto.label not in fired(veto.speaker, line), line
        # switched off, the label fires again
        assert veto.label in fired(veto.speaker, line, off={veto.id}), line


@pytest.mark.parametrize("pattern", PATTERNS[::7], ids=lambda p: p.id)
def test_a_pattern_switched_off_no_longer_fires_and_the_others_still_do(pattern):
    for line in pattern.fires:
        signal = fired(pattern.speaker, line, off={pattern.id}).get(pattern.label)
        assert signal is None or signal.rule != pattern.id
    other = next(p for p in PATTERNS if p.label == pattern.label and p is not pattern)
    assert fired(other.speaker, other.fires[0], off={pattern.id})[other.label].rule == other.id


def test_a_labels_meaning_switched_off_drops_its_matches_and_a_phrase_rule_still_fires():
    match = ExemplarMatch("escalation_request", 0.71, "is there anyone who can actually do something", "somebody who can decide", 0.62)
    line = "Is there anyone who can actually do something?"
    assert fired("customer", line, matches=[match])["escalation_request"].rule == "escalation_request.meaning"
    assert "escalation_request" not in fired("customer", line, off={"escalation_request.meaning"}, matches=[match])
    assert fired("customer", "Put me through to your supervisor.", off={"escalation_request.meaning"},
                 matches=[match])["escalation_request"].rule == "escalation_request.ask_for_senior"


def test_every_built_in_signal_in_the_stream_names_its_rule():
    signal = fired("customer", "I'm cancelling my contract today.")["churn_threat"]
    assert signal.to_dict()["rule"] == "churn_threat.im_cancelling"


def _rules_file(tmp_path, match: str, extra: str = "") -> object:
    path = tmp_path / "rules.yaml"
    path.write_text(textwrap.dedent(f"""\
        signals:
          abuse:
            speaker: customer
            patterns:
              - id: one
                match: '{match}'
                fires: ["x"]
                quiet: ["y"]
        """) + extra)
    return path


@pytest.mark.parametrize("match, why", [
    (r"(?:\w+\s?)*$", "could backtrack without end"),
    (r"\b(idiot)\b", "captures nothing"),
    (r"\b(?:idiot\b", "not a valid expression"),
    (r"\b{IDIOT}\b", "{IDIOT} is not one of the words"),
])
def test_a_rules_file_with_an_unsafe_pattern_is_refused_in_one_line(tmp_path, match, why):
    with pytest.raises(RulesError, match=why) as refused:
        load_rules(_rules_file(tmp_path, match))
    assert "abuse.one" in str(refused.value) and "\n" not in str(refused.value)


def test_a_rules_file_with_an_id_written_twice_is_refused(tmp_path):
    twice = "      - id: one\n        match: 'b'\n        fires: ['b']\n        quiet: ['c']\n"
    with pytest.raises(RulesError, match="abuse.one is written twice"):
        load_rules(_rules_file(tmp_path, "a", twice))


def test_the_rules_as_data_find_what_the_joined_expression_finds():
    """Each label is one pass of named alternatives: on a line that two patterns match, the first in
    the text wins (not the first in the file), as it did before the rules were data."""
    line = "I've called twice already, and this is the third time."
    assert BOOK.patterns.index(next(p for p in PATTERNS if p.id == "repeat_contact.nth_time")) < \
        BOOK.patterns.index(next(p for p in PATTERNS if p.id == "repeat_contact.already_called"))
    assert fired("customer", line)["repeat_contact"].rule == "repeat_contact.already_called"
    assert fired("customer", line, off={"repeat_contact.already_called"})["repeat_contact"].rule == "repeat_contact.nth_time"


def test_an_id_once_shipped_stays_or_is_retired_and_a_playbook_switching_a_retired_one_off_still_loads(tmp_path):
    from pathlib import Path

    import yaml

    from coach.playbook import DEFAULT_PLAYBOOK, load_playbook

    shipped = [line for line in (Path(__file__).parent / "rule_ids.txt").read_text().splitlines() if line and not line.startswith("#")]
    assert set(shipped) - set(BOOK.ids()) - set(BOOK.retired) == set()  # a team's switched_off: keeps loading
    assert set(BOOK.retired) & set(BOOK.ids()) == set()
    book = yaml.safe_load(DEFAULT_PLAYBOOK.read_text())
    book["switched_off"] = ["churn_threat.take_my_business_elsewhere"]
    path = tmp_path / "playbook.yaml"
    path.write_text(yaml.safe_dump(book))
    assert load_playbook(path).switched_off == ["churn_threat.take_my_business_elsewhere"]
    assert "churn_threat" in fired("customer", "I'll be taking my business elsewhere.", off=set(book["switched_off"]))


def test_a_playbook_refuses_an_unknown_rule_with_the_nearest_id(tmp_path):
    import yaml

    from coach.playbook import DEFAULT_PLAYBOOK, PlaybookError, load_playbook

    book = yaml.safe_load(DEFAULT_PLAYBOOK.read_text())
    book["switched_off"] = ["churn_threat.exit_fees", "dead_air.timing"]
    path = tmp_path / "playbook.yaml"
    path.write_text(yaml.safe_dump(book))
    with pytest.raises(PlaybookError, match=r"switched_off: unknown rule 'churn_threat.exit_fees' \(did you mean churn_threat.exit_fee\?\)"):
        load_playbook(path)
    book["switched_off"] = ["churn_threat.exit_fee", "dead_air.timing", "abuse.meaning", "abuse.taken_back"]
    path.write_text(yaml.safe_dump(book))
    assert load_playbook(path).off() == frozenset(book["switched_off"])
