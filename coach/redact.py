"""Personal data out of transcripts: card, ID and account numbers, e-mail addresses, phone numbers.

Between the detectors and the bus. The detectors read what was said; what is stored, and what team
leads and QA see, is the redacted text, and the stored recording is silenced where it was said.

Numbers come written ("4111 1111 1111 1111", "4111-1111") or spoken ("four one one one", "double
five", "oh", "forty one"); a run of digits may be split by spaces, commas, dashes or the word "dash".
How many digits make a run personal depends on what the call is about:

- anywhere: 7 digits or more (13-19: a card; 10-11: a phone number; else a number), a written
  ``123-45-6789`` (an ID number), an e-mail address, written or spoken ("jo dot smith at mail dot com");
- for ``context_seconds`` after someone mentions a card, an account, an ID or a phone (either party),
  or after a redaction: 2 digits or more, named by that topic (3 or more after "number"/"digits").
  People read a card number in groups across several pauses, the speech model may hear only part
  of a group ("fine fine two six"), and a security code is three digits.

Money ("$1,500", "forty five dollars") and quantities with a unit ("30 days") are kept.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["Redactor", "Span", "redact_text"]

DIGIT_WORDS = {
    "zero": 0, "oh": 0, "o": 0, "nought": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5,
    "six": 6, "seven": 7, "eight": 8, "nine": 9,
}
TEEN_WORDS = {
    "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15, "sixteen": 16,
    "seventeen": 17, "eighteen": 18, "nineteen": 19,
}
TENS_WORDS = {"twenty": 2, "thirty": 3, "forty": 4, "fifty": 5, "sixty": 6, "seventy": 7, "eighty": 8, "ninety": 9}
REPEAT_WORDS = {"double": 2, "triple": 3}
# digits the speech model may write as words ("fine fine two six"): only next to a digit
SOUNDALIKES = {"for": 4, "fore": 4, "to": 2, "too": 2, "won": 1, "ate": 8, "fine": 5, "tree": 3, "free": 3, "niner": 9}
JOINERS = {"-", ",", ".", "/", "dash", "hyphen"}  # may sit between the digits of one run
UNIT_AFTER = re.compile(
    r"^\s*(?:%|(?:percent|per\s*cent|dollars?|bucks|pounds?|quid|euros?|cents?|pence|p\b|minutes?|hours?|days?|weeks?|"
    r"months?|years?|times|gigs?|gb|mb|kwh|miles?|km|calls?|items?|pairs?)\b)",
    re.IGNORECASE,
)
MONEY_BEFORE = re.compile(r"[$£€]\s*$")

# what a call is about when someone says these (the last one said wins)
TOPICS = (
    ("card", re.compile(r"\b(?:card|credit|debit|visa|master ?card|amex|expiry|expiration|expires|cvv|cvc|security code|"
                        r"long number)\b", re.IGNORECASE)),
    ("account", re.compile(r"\b(?:account|routing|sort code|iban|swift|bank|member(?:ship)? number|policy number|"
                           r"reference number)\b", re.IGNORECASE)),
    ("id", re.compile(r"\b(?:social security|ssn|social|national insurance|ni number|national id|id number|passport|"
                      r"licen[cs]e number|date of birth|birthday|born)\b", re.IGNORECASE)),
    ("phone", re.compile(r"\b(?:phone|mobile|cell|telephone|landline|call you back|call me back|reach you|reach me|"
                         r"extension|text me)\b", re.IGNORECASE)),
    ("number", re.compile(r"\b(?:numbers?|digits?|pin|zip|post ?code|code)\b", re.IGNORECASE)),
)
GUARDED = ("card", "account", "id")  # topics during which the customer's audio is not kept
LABELS = {
    "card": "[card number]", "account": "[account number]", "id": "[ID number]", "phone": "[phone number]",
    "number": "[number]", "email": "[email]",
}

TOKEN = re.compile(r"[A-Za-z]+|\d+|[^\sA-Za-z\d]")
EMAIL_WRITTEN = re.compile(r"(?<![\w.+-])[\w.+-]++@[\w-]++(?:\.[\w-]++)++")
TLDS = ("com", "net", "org", "co", "uk", "io", "edu", "gov", "us", "ca", "de", "fr", "ie", "au", "info", "biz", "me")
# "jo dot smith at mail dot com", "jsmith at gmail.com", "j.smith at outlook dot co dot uk". Every
# quantifier in a repeated group is possessive (coach/textguard.py): "S-M-I-T-H-..." with no "at"
# after it is read once, not split every possible way. The domain is taken whole, then its last
# label must be a top-level domain (a lookbehind per TLD, since it cannot be given back).
EMAIL_SPOKEN = re.compile(
    r"(?<![\w+.-])[\w+-]++(?:(?:\s++(?:dot|underscore|dash|hyphen)\s++|[._-])[\w+-]++)*+"
    r"\s++(?:at(?:\s++(?:sign|symbol))?|@)\s++"
    r"[\w-]++(?:(?:\s++dot\s++|\.)[\w-]++)++"
    r"(?:" + "|".join(rf"(?<=[. ]{tld})" for tld in TLDS) + r")\b",
    re.IGNORECASE,
)
ID_WRITTEN = re.compile(r"\b\d{3}-\d{2}-\d{4}\b|\b[A-CEGHJ-PR-TW-Z]{2}\s?\d{2}\s?\d{2}\s?\d{2}\s?[A-D]\b")


@dataclass(frozen=True, slots=True)
class Span:
    """One redaction: characters ``start:end`` of the text were a ``kind``."""

    start: int
    end: int
    kind: str


@dataclass(slots=True)
class _Run:
    start: int  # character offsets in the text
    end: int
    digits: str


def _is_digit_token(word: str) -> bool:
    return word.isdigit() or word.lower() in DIGIT_WORDS


def _digit_follows(tokens: list[tuple[str, int, int]], i: int) -> bool:
    """Is token ``i`` followed by a digit (perhaps after a joiner, or after more soundalikes)?"""
    j = i + 1
    while j < len(tokens) and (tokens[j][0] in JOINERS or tokens[j][0].lower() in SOUNDALIKES):
        j += 1
    return j < len(tokens) and _is_digit_token(tokens[j][0]) and tokens[j][0].lower() != "o"


def _digit_runs(text: str) -> list[_Run]:
    """Maximal runs of digits, written or spoken, with the joiners between them."""
    runs: list[_Run] = []
    tokens = [(m.group(), m.start(), m.end()) for m in TOKEN.finditer(text)]
    current: _Run | None = None
    pending_repeat = 1
    i = 0
    while i < len(tokens):
        word, start, end = tokens[i]
        low = word.lower()
        digits: str | None = None
        if word.isdigit():
            digits = word
        elif low in DIGIT_WORDS and not (low == "o" and current is None and not _digit_follows(tokens, i)):
            digits = str(DIGIT_WORDS[low])
        elif low in SOUNDALIKES and _digit_follows(tokens, i):
            digits = str(SOUNDALIKES[low])
        elif low in TEEN_WORDS:
            digits = str(TEEN_WORDS[low])
        elif low in TENS_WORDS:
            digits = str(TENS_WORDS[low])
            # "forty one", "forty-one": one two-digit number
            j = i + 1
            if j + 1 < len(tokens) and tokens[j][0] == "-":
                j += 1
            if j < len(tokens) and tokens[j][0].lower() in DIGIT_WORDS and tokens[j][0].lower() not in ("oh", "o", "zero", "nought"):
                digits += str(DIGIT_WORDS[tokens[j][0].lower()])
                end = tokens[j][2]
                i = j
            else:
                digits += "0"
        elif low in REPEAT_WORDS and i + 1 < len(tokens) and _is_digit_token(tokens[i + 1][0]):
            pending_repeat = REPEAT_WORDS[low]
            if current is None:
                current = _Run(start, end, "")
            i += 1
            continue
        if digits is not None:
            if pending_repeat > 1 and len(digits) == 1:
                digits *= pending_repeat
            pending_repeat = 1
            if current is None:
                current = _Run(start, end, digits)
            else:
                current.end, current.digits = end, current.digits + digits
        elif current is not None and low in JOINERS and i + 1 < len(tokens):
            pass  # a joiner: the run may go on
        else:
            if current is not None and current.digits:
                runs.append(current)
            current, pending_repeat = None, 1
        i += 1
    if current is not None and current.digits:
        runs.append(current)
    return runs


def luhn_valid(digits: str) -> bool:
    """The check digit card numbers carry."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _is_quantity(text: str, run: _Run) -> bool:
    return bool(MONEY_BEFORE.search(text[: run.start]) or UNIT_AFTER.match(text[run.end :]))


def _kind_of(digits: str, topic: str | None) -> str | None:
    """What a run of digits is, or None to keep it."""
    n = len(digits)
    if 13 <= n <= 19 and (topic in (None, "card", "number") or luhn_valid(digits)):
        return "card"
    if topic not in (None, "number") and n >= 2:
        return topic
    if n >= 7 or (topic == "number" and n >= 3):
        return "phone" if n in (10, 11) else "number"
    return None


def _topic_in(text: str) -> str | None:
    """The topic last mentioned in ``text``. "Number" after a topic ("card number", "account
    number") is that topic."""
    mentions = sorted((m.end(), m.start(), topic) for topic, pattern in TOPICS for m in pattern.finditer(text))
    best: tuple[str | None, int] = (None, -1)
    for end, start, topic in mentions:
        if topic == "number" and best[0] not in (None, "number") and start - best[1] <= 12:
            best = (best[0], end)
        else:
            best = (topic, end)
    return best[0]


def _narrower(said: str | None, before: str | None) -> str | None:
    """The topic now: what was just said, unless that is only "number" and a named topic is going on."""
    if said is None or (said == "number" and before is not None):
        return before
    return said


def redact_text(text: str, topic: str | None = None) -> tuple[str, list[Span]]:
    """``text`` with personal data replaced by ``[card number]``-style labels, and what was replaced.
    ``topic``: what the call was about just before (None: nothing sensitive)."""
    spans: list[Span] = []
    taken: list[tuple[int, int]] = []

    def free(start: int, end: int) -> bool:
        return all(end <= s or start >= e for s, e in taken)

    for pattern, kind in ((EMAIL_WRITTEN, "email"), (EMAIL_SPOKEN, "email"), (ID_WRITTEN, "id")):
        for m in pattern.finditer(text):
            if free(m.start(), m.end()):
                spans.append(Span(m.start(), m.end(), kind))
                taken.append((m.start(), m.end()))
    for run in _digit_runs(text):
        if not free(run.start, run.end) or _is_quantity(text, run):
            continue
        kind = _kind_of(run.digits, _narrower(_topic_in(text[: run.start]), topic))
        if kind is not None:
            spans.append(Span(run.start, run.end, kind))
            taken.append((run.start, run.end))
    spans.sort(key=lambda s: s.start)
    out, last = [], 0
    for span in spans:
        out.append(text[last : span.start])
        out.append(LABELS[span.kind])
        last = span.end
    out.append(text[last:])
    return "".join(out), spans


class Redactor:
    """One call's redaction: remembers what the call was about (the last sensitive topic, for
    ``context_seconds`` of call audio) across both parties' segments."""

    def __init__(self, context_seconds: float = 30.0) -> None:
        self.context_seconds = context_seconds
        self._topic: str | None = None
        self._until = -1.0

    def topic(self, at: float) -> str | None:
        return self._topic if at <= self._until else None

    def guarded_until(self, at: float) -> float | None:
        """While a card, account or ID is being given (its topic open at call time ``at``), until when;
        else None. The kept recording silences the customer for that long."""
        return self._until if self.topic(at) in GUARDED else None

    def text(self, text: str, at: float, remember: bool = True) -> tuple[str, list[Span]]:
        """``text`` (said up to call time ``at``) redacted; what it says about the topic is remembered."""
        redacted, spans = redact_text(text, self.topic(at))
        if not remember:
            return redacted, spans
        numbers = [span.kind for span in spans if span.kind != "email"]
        said = _topic_in(text)
        if numbers or said is not None:  # a redaction or a mention keeps the topic open
            self._topic = _narrower(said, numbers[-1] if numbers else self.topic(at))
            self._until = at + self.context_seconds
        return redacted, spans

    def event(self, message: dict) -> tuple[dict, list[Span]]:
        """An event of the analysis stream with its text redacted (transcripts' ``text``, signals'
        ``evidence``); other events pass as they are."""
        kind = message.get("type")
        field = "text" if kind == "transcript" else "evidence" if kind == "signal" else None
        if field is None or not isinstance(message.get(field), str):
            return message, []
        at = float(message.get("end", message.get("at", 0.0)))
        redacted, spans = self.text(message[field], at, remember=kind == "transcript")
        if not spans:
            return message, []
        return {**message, field: redacted}, spans
