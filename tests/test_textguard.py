"""Regular expressions that read transcripts cannot backtrack exponentially (issue 27)."""

import re

import pytest

import coach.detect.exemplars
import coach.detect.sentiment
import coach.detect.timing
import coach.detect.triggers
import coach.redact
from coach.textguard import MAX_TEXT_CHARS, backtracking_nests, bounded, patterns_in

TEXT_READERS = [coach.redact, coach.detect.triggers, coach.detect.timing, coach.detect.exemplars, coach.detect.sentiment]


def test_every_pattern_that_reads_transcripts_nests_no_backtracking_quantifier():
    from coach.detect.triggers import built_in

    checked = list(patterns_in(TEXT_READERS))
    checked += [(p.id, p.regex) for p in built_in().patterns]  # models/rules.yaml, one by one
    checked += [(rule.label, joined) for rule in built_in().rules() for joined in (rule.pattern, rule.veto) if joined is not None]
    assert len(checked) >= 150  # the trigger rules and their vetoes, redaction's, timing's
    offenders = {name: found for name, pattern in checked if (found := backtracking_nests(pattern))}
    assert offenders == {}


@pytest.mark.parametrize("pattern", [
    r"(a+)+b",
    r"(?:\w+\s?)*$",
    # redaction's spoken e-mail before issue 27: "S-M-I-T-H-..." with no " at " took minutes
    r"\b[\w+-]+(?:(?:\s+(?:dot|underscore|dash)\s+|[._-])[\w+-]+)*\s+at\s+[\w-]+(?:(?:\s+dot\s+|\.)[\w-]+)*(?:\s+dot\s+|\.)(?:com)\b",
    r"(?:x|(?:ab){2,})*",
])
def test_the_check_finds_nested_backtracking(pattern):
    assert backtracking_nests(re.compile(pattern))


@pytest.mark.parametrize("pattern", [r"(?:\w++\s?)*$", r"(?>a+)+b", r"\b(?:a|b)[^.]{0,30}c", r"(?:a\w*+)+"])
def test_possessive_atomic_and_flat_patterns_pass(pattern):
    assert backtracking_nests(re.compile(pattern)) == []


def test_text_is_bounded_at_a_space():
    long = "word " * 1000
    cut = bounded(long)
    assert len(cut) <= MAX_TEXT_CHARS and cut.endswith("word") and bounded("short") == "short"
