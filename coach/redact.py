"""Personal data out of transcripts: card, ID and account numbers, codes with letters, dates of birth,
e-mail addresses, phone numbers.

Between the detectors and the bus, in a thread of its own. The detectors read what was said; what is
stored, and what team leads and QA see, is the redacted text, and the stored recording is silenced
where it was said (and, failing closed, wherever a card, account, ID or birth date is being given).

Numbers come written ("4111 1111 1111 1111", "4111-1111") or spoken ("four five three nine", "double
five", "oh", "forty one"), codes with letters ("G B two nine N W B K", "IE55 BOFI", "G for golf"),
names spelled ("S-M-I-T-H", "j o y c e"). A *run* is one such sequence with its joiners (spaces,
commas, dashes, "dash", "slash"). What makes a run personal depends on how it was said and what the
call is about:

- anywhere: 7 digits or more (13-19: a card; 10-11: a phone number), 4 or more digits read one at a
  time, letters among digits, three or more letters spelled, a written ``123-45-6789``, an e-mail
  address written or spoken ("jo dot smith at mail dot com", "priyanka underscore" ... "at the rate
  yahoo dot co dot in");
- a final that is only a group read out ("4497", "A B N A"), and a group that goes on from the one the
  same party's last final ended with: a card read in groups over several finals;
- for ``context_seconds`` after someone mentions a card, an account, an ID, a birth date or a phone
  (either party), or after a redaction: 2 digits or more read as an identifier, named by that topic;
  a date is a birth date (an expiry under a card's topic).

Kept: money ("$1,500", "nine pounds ninety", "payments of thirty-two fifty"), quantities with a unit
("30 days", "3 to 5 working days"), ages ("she's 15"), years ("since 2009"), times ("after eleven"),
rough figures ("about two-fifty") and dates that are not birth dates ("the 21st", "in January").

Every pattern here is linear in the text (coach/textguard.py: no backtracking quantifier inside a
repeated group).
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
JOINERS = {"-", ",", ".", "/", "'", "dash", "hyphen", "slash"}  # may sit between the pieces of one run
UNITS = (r"%|(?:percent|per\s*cent|dollars?|bucks|pounds?|quid|euros?|cents?|pence|p\b|rand|rupees?|naira|pesos?|each|"
         r"digits?|minutes?|hours?|days?|weeks?|months?|years?|times|gigs?|gb|mb|kwh|units?|miles?|km|calls?|items?|pairs?|odd|ish|"
         r"characters?|people|degrees?|grand|k\b|seconds?|hundred|thousand|million|o'clock|am\b|pm\b|a\.m\.|p\.m\.|kilowatt|"
         r"litres?|liters?|texts?|kilos?|kg|year|old)\b")
# a unit right after the number, or after one of a few words that qualify it ("3 to 5 working days");
# a time of day after a short number ("seven twenty-five now")
UNIT_AFTER = re.compile(
    r"^[\s-]*+(?:(?:working|business|calendar|more|extra|whole|full|odd|per|a|an)\s++)?(?:" + UNITS + ")", re.IGNORECASE)
WHEN_AFTER = re.compile(r"^[\s,]*+(?:now|tonight|today|tomorrow|this (?:morning|afternoon|evening))\b", re.IGNORECASE)
MONEY_BEFORE = re.compile(r"(?:[$£€₹₦]|(?<![A-Za-z])R|\bRs\.?|\b(?:hundred|thousand|point)\s|\b(?:hundred|thousand)\s++and\s|"
                          r"\b(?:balance|payments?|price|cost|costs|charge|charged|fee|total|paid|pay|owe|owing|refund|bill|premium)\s++(?:of\s++|is\s++|was\s++|be\s++)?|"
                          r"\b(?:pounds?|dollars?|euros?|rand|quid|bucks)\s++(?:and\s++)?)\s*$", re.IGNORECASE)
# a number said as a time or an estimate: "after eleven", "about two-fifty", "under twenty-five"
ROUGHLY_BEFORE = re.compile(r"\b(?:after|before|at|by|around|about|roughly|nearly|almost|under|over|until|till|past|gone)\s*$", re.IGNORECASE)
MONTH_WHEN = re.compile(r"\b(?:in|since|until|till|last|next|this|by|before|after|early|late|mid|end of)\s*$", re.IGNORECASE)
NUMBER_IS = re.compile(r"\bnumber(?:'s| is| was)\s*$", re.IGNORECASE)
ACRONYM_IS = re.compile(r"\b[A-Z]{2,5}(?:'s| is| was)\s*$")  # "TRN is", "PPS is": a number named by its acronym
ENDING_IN = re.compile(r"\bending(?:\s++in)?(?:\s++with)?\s*$", re.IGNORECASE)  # "the card ending 8835"
PLUS_BEFORE = re.compile(r"(?:\bplus|\+)\s*$", re.IGNORECASE)
AGE_BEFORE = re.compile(r"\b(?:i'm|i am|she's|she is|he's|he is|they're|aged|age|turned|turning)\s*$", re.IGNORECASE)
COUNT_BEFORE = re.compile(r"\b(?:last|first|next|other|those|these|the|a|this|that|which|every)\s*$", re.IGNORECASE)
YEAR_BEFORE = re.compile(r"\b(?:since|in|from|of|year|until|till|by|back in|before|after|around|about|through|summer|winter|spring|autumn|fall)\s*$",
                         re.IGNORECASE)

MONTHS = {
    "january": 1, "february": 2, "march": 3, "april": 4, "may": 5, "june": 6, "july": 7, "august": 8, "september": 9,
    "october": 10, "november": 11, "december": 12, "jan": 1, "feb": 2, "mar": 3, "apr": 4, "jun": 6, "jul": 7, "aug": 8,
    "sep": 9, "sept": 9, "oct": 10, "nov": 11, "dec": 12,
}
UNAMBIGUOUS_MONTHS = {"january", "february", "august", "september", "october", "november", "december"}
ORDINAL_WORDS = {
    "first": 1, "second": 2, "third": 3, "fourth": 4, "fifth": 5, "sixth": 6, "seventh": 7, "eighth": 8, "ninth": 9,
    "tenth": 10, "eleventh": 11, "twelfth": 12, "thirteenth": 13, "fourteenth": 14, "fifteenth": 15, "sixteenth": 16,
    "seventeenth": 17, "eighteenth": 18, "nineteenth": 19, "twentieth": 20, "thirtieth": 30,
}
ORDINAL_SUFFIXES = {"st", "nd", "rd", "th"}
# words around a bare number that say nothing themselves: a final of only these and a number is that number
FILLERS = {
    "yes", "yeah", "yep", "yup", "ok", "okay", "so", "and", "then", "it", "it's", "its", "is", "um", "uh", "er", "erm", "right",
    "sorry", "that's", "thats", "next", "last", "lastly", "finally", "mm", "hm", "mhm", "the", "rest", "ends", "with", "go", "on",
    "after", "that",
}
CAPS_CODE = re.compile(r"[A-Z]{2,4}")  # "GB", "NWBK": part of a code when next to its digits
CAPS_WORDS = {"OK", "TV", "ID", "AM", "PM", "PIN", "SMS", "MP", "GP", "NHS", "USA", "UK", "US", "IT", "HR", "DVD", "PC", "VAT", "APR"}


def _token_pattern() -> re.Pattern[str]:
    return re.compile(r"[A-Za-z]+(?:'[a-z]+)?|\d+|[^\sA-Za-z\d]")


# what a call is about when someone says these (the last one said wins)
TOPICS = (
    ("card", re.compile(r"\b(?:card|credit|(?<!direct )debit|visa|master ?card|amex|expiry|expiration|expires|cvv|cvc|security code|"
                        r"long number|three digits|on the back)\b", re.IGNORECASE)),
    ("account", re.compile(r"\b(?:account|routing|sort code|iban|swift|bic|bank|member(?:ship)? number|policy number|"
                           r"reference number)\b", re.IGNORECASE)),
    ("dob", re.compile(r"\b(?:date of birth|birth ?date|birthday|born|birth|d\.? ?o\.? ?b\.?)\b", re.IGNORECASE)),
    ("id", re.compile(r"\b(?:social security|ssn|social|national insurance|ni number|national id|id number|passport|"
                      r"licen[cs]e number|driver'?s licen[cs]e|driving licen[cs]e|medicare|pps|tax id)\b", re.IGNORECASE)),
    ("phone", re.compile(r"\b(?:phone|mobile|cell|telephone|landline|call you back|call me back|reach you|reach me|ring me|ring you|"
                         r"whatsapp|message me|call me on|"
                         r"extension|text me)\b", re.IGNORECASE)),
    ("email", re.compile(r"\b(?:e-?mail(?:ed|ing|s)?(?: address| id)?|mail id)\b", re.IGNORECASE)),
    ("number", re.compile(r"\b(?:numbers?|digits?|pin|zip|post ?code|code)\b", re.IGNORECASE)),
)
GUARDED = ("card", "account", "id", "dob")  # topics during which the customer's audio is not kept
LABELS = {
    "card": "[card number]", "account": "[account number]", "id": "[ID number]", "phone": "[phone number]",
    "number": "[number]", "email": "[email]", "dob": "[date of birth]", "spelled": "[spelled out]",
}

TOKEN = _token_pattern()
EMAIL_WRITTEN = re.compile(r"(?<![\w.+-])[\w.+-]++@[\w-]++(?:\.[\w-]++)++")
MAIL_HOSTS = ("gmail", "googlemail", "hotmail", "yahoo", "outlook", "icloud", "aol", "protonmail", "btinternet")
TLDS = ("com", "net", "org", "edu", "gov", "info", "biz")  # and every two-letter country
# "jo dot smith at mail dot com", "jsmith at gmail.com", "j.smith at outlook dot co dot uk", "at hotmail dot
# com" (the name spelled in the finals before). Every quantifier in a repeated group is possessive
# (coach/textguard.py): "S-M-I-T-H-..." with no "at" after it is read once, not split every possible
# way. The domain is taken whole, then its last label must be a top-level domain (a lookbehind per
# TLD, since it cannot be given back).
EMAIL_SPOKEN = re.compile(
    r"(?:(?<![\w+.-])[\w+-]++(?:(?:\s++(?:dot|underscore|dash|hyphen)\s++|[._-])[\w+-]++)*+\s++|\b)"
    r"(?:at(?:\s++(?:sign|symbol|the\s++rate))?|@)\s++"
    r"(?:[\w-]++(?:\s++(?!dot\b)[\w-]++)?(?:(?:\s++dot\s++|\.)[\w-]++)++"
    r"(?:" + "|".join(rf"(?<=[. ]{tld})" for tld in TLDS) + r"|(?<=[. ][a-z]{2})|(?<=[. ][a-z]-[a-z]))|(?:" + "|".join(MAIL_HOSTS) + r")(?![\w-]))\b",
    re.IGNORECASE,
)
HANDLE = re.compile(r"(?<![\w.@])(?!(?:[ap]\.m|e\.g|i\.e|etc)\b)[A-Za-z][A-Za-z0-9]*+(?:[._][A-Za-z0-9]++)++(?![\w@])", re.IGNORECASE)  # "jo.smith82": a name on its own
DOT_TLD = re.compile(r"\bdot\s++(?:co\s++dot\s++)?(?:com|net|org|edu|gov|info|[a-z]{2})\b", re.IGNORECASE)
LOCAL_THEN_AT = re.compile(r"\w\s++(?P<at>at)\s*+[.,]?\s*+$", re.IGNORECASE)
EMAIL_LINKS = {"dot", "underscore", "dash", "hyphen", "period", ".", "_", "-", ",", "then"}
ID_WRITTEN = re.compile(r"\b\d{3}-\d{2}-\d{4}\b|\b[A-CEGHJ-PR-TW-Z]{2}\s?\d{2}\s?\d{2}\s?\d{2}\s?[A-D]\b")


@dataclass(frozen=True, slots=True)
class Span:
    """One redaction: characters ``start:end`` of the text were a ``kind``."""

    start: int
    end: int
    kind: str


@dataclass(slots=True)
class _Run:
    """A run of number-like pieces, as said: digits written or spoken, letters spelled, a date's parts."""

    start: int  # character offsets in the text
    end: int
    digits: str = ""  # its digits (and letters, for a code), in order
    singles: int = 0  # digits said or written one at a time ("four five", "4 5"): how identifiers are read
    written: int = 0  # digits written as numerals
    compounds: int = 0  # "forty", "twenty-six", "eleven": how quantities are said
    letters: int = 0  # letters of a code or a spelling ("G B", "S-M-I-T-H", "HBUK")
    ordinal: bool = False  # "21st", "third": a date or a position
    month: bool = False
    months: int = 0  # month names in it: "September, October and November" is no date
    thousands: bool = False  # "3,100": an amount
    magnitude: bool = False  # "hundred", "thousand" said: an amount or a year in words

    @property
    def length(self) -> int:
        return len(self.digits)

    @property
    def identifier_shaped(self) -> bool:
        """Read the way identifiers are read: digit by digit, as numerals, or with letters among digits."""
        return (self.singles >= 2 or self.written >= 2 or (self.letters and len(self.digits) > self.letters)
                or (self.compounds >= 2 and len(self.digits) >= 4 and not self.ordinal and not self.month))  # "forty-five sixty-two"


def _is_digit_token(word: str) -> bool:
    return word.isdigit() or word.lower() in DIGIT_WORDS


def _is_number_word(word: str) -> bool:
    low = word.lower()
    return word.isdigit() or low in DIGIT_WORDS or low in TEEN_WORDS or low in TENS_WORDS


def _digit_follows(tokens: list[tuple[str, int, int]], i: int) -> bool:
    """Is token ``i`` followed by a digit (perhaps after a joiner, or after more soundalikes)?"""
    j = i + 1
    while j < len(tokens) and (tokens[j][0] in JOINERS or tokens[j][0].lower() in SOUNDALIKES):
        j += 1
    return j < len(tokens) and _is_digit_token(tokens[j][0]) and tokens[j][0].lower() != "o"


def _single_letter(tokens, i: int, alone: bool = False) -> bool:
    """A letter being spelled: hyphen-linked to another ("S-M-I-T-H"), lower-case among others ("j o y
    c e"), an upper-case letter beside a digit or another such letter ("G B two nine"), or alone in its
    final (``alone``). A letter with its phonetic word ("G for golf") is taken before this."""
    word = tokens[i][0]
    if len(word) != 1 or not word.isalpha():
        return False
    near = lambda j: 0 <= j < len(tokens)  # noqa: E731
    if _hyphen_spelled(tokens, i):
        return True
    if word.islower() and _lowercase_spelling(tokens, i):
        return True  # "j o y c e"
    if not word.isupper():
        return False
    if word not in "IA" and alone:
        return True  # a final of one letter ("C."): the end of something spelled
    if word in ("I", "A"):  # a pronoun or an article, unless among other letters and digits
        def neighbour(step: int) -> str | None:
            j = i + step
            if near(j) and tokens[j][0] in (",", ".") and near(j + step):
                j += step
            return tokens[j][0] if near(j) else None

        def code_piece(token: str | None) -> bool:
            return token is not None and (_is_digit_token(token) or (len(token) == 1 and token.isupper()))

        before, after = neighbour(-1), neighbour(1)
        if code_piece(after) and near(i + 2) and (code_piece(tokens[i + 2][0]) or (tokens[i + 2][0] in (",", ".", "-") and near(i + 3) and code_piece(tokens[i + 3][0]))):
            return True  # "I E two zero", "A I B K": the first letter of a code
        lowercase_word = lambda token: token is not None and token[:1].islower() and not _is_digit_token(token)  # noqa: E731
        return (code_piece(before) and not lowercase_word(after)) or (code_piece(after) and not lowercase_word(before))
    for j in (i - 1, i + 1, i - 2, i + 2):
        if near(j) and (_is_number_word(tokens[j][0]) or (len(tokens[j][0]) == 1 and tokens[j][0].isupper())):
            if abs(j - i) == 1 or tokens[(i + j) // 2][0] in JOINERS:
                return True
    return False


def _lowercase_spelling(tokens, i: int) -> bool:
    """Three or more single lower-case letters in a row (a name spelled the way a recogniser may write it)."""
    def letter(j: int) -> bool:
        return 0 <= j < len(tokens) and len(tokens[j][0]) == 1 and tokens[j][0].isalpha()

    return any(all(letter(k) for k in range(start, start + 3)) for start in (i - 2, i - 1, i))


def _hyphen_spelled(tokens, i: int) -> bool:
    """A letter hyphen-linked to another: "S-M-I-T-H"."""
    def letter(j: int) -> bool:
        return 0 <= j < len(tokens) and len(tokens[j][0]) == 1 and tokens[j][0].isalpha()

    return letter(i) and ((letter(i + 2) and tokens[i + 1][0] == "-") or (letter(i - 2) and tokens[i - 1][0] == "-"))


def _phonetic(tokens, i: int) -> int:
    """"G for golf", "J as in Juliet": how many tokens after the letter belong to it (0: none)."""
    word = tokens[i][0]
    for words in (("for",), ("as", "in"), ("like",)):
        j = i + 1 + len(words)
        if j < len(tokens) and all(tokens[i + 1 + k][0].lower() == w for k, w in enumerate(words)):
            while j < len(tokens) - 1 and tokens[j][0] in (".", ","):  # "Y for... yuzu"
                j += 1
            if tokens[j][0][:1].upper() == word.upper() and len(tokens[j][0]) > 1 and tokens[j][0].isalpha():
                return j - i
    return 0


def _is_month(tokens, i: int) -> bool:
    """A month's name, not the verb or the word: "March" or "Mar 3" (capitalised), any "november";
    not "march", "may", "APR"."""
    word = tokens[i][0]
    if word.lower() in UNAMBIGUOUS_MONTHS:
        return True
    if not (word[0].isupper() and word[1:].islower()):
        return False
    return len(word) > 3 or word == "May" or (i + 1 < len(tokens) and _is_digit_token(tokens[i + 1][0]))


def _date_follows(tokens, i: int) -> bool:
    """Is the ordinal word at ``i`` part of a date: a month, "month", or another date part after it
    ("the third of the fifth", "fourteenth of March"), or the end of a final read out alone?"""
    j = i + 1
    while j < len(tokens) and tokens[j][0].lower() in ("of", "the", ",", "a", "o", "'"):
        j += 1
    if j >= len(tokens):
        return j > i + 1 or i == 0 or tokens[i - 1][0].lower() in ("the",)
    nxt = tokens[j][0].lower()
    return nxt in MONTHS or nxt == "month" or (j > i + 1 and (nxt in ORDINAL_WORDS or nxt.isdigit() or nxt in TENS_WORDS or nxt in TEEN_WORDS))


def _caps_code(tokens, i: int) -> bool:
    """An upper-case block of a code ("GB", "HBUK") with a digit beside it."""
    word = tokens[i][0]
    if not CAPS_CODE.fullmatch(word) or word in CAPS_WORDS:
        return False
    return any(0 <= j < len(tokens) and (_is_digit_token(tokens[j][0]) or tokens[j][0].lower() in TENS_WORDS or tokens[j][0].lower() in TEEN_WORDS)
               and tokens[j][0].lower() not in ("o", "oh") for j in (i - 1, i + 1)) or (
        i + 2 < len(tokens) and tokens[i + 1][0] in (",", ".") and tokens[i + 2][0].isdigit() or (i + 2 < len(tokens) and tokens[i + 1][0] == "," and tokens[i + 2][0].lower() in DIGIT_WORDS)
    )


def _runs(text: str) -> list[_Run]:
    """Maximal runs of number-like pieces, written or spoken, with the joiners between them."""
    runs: list[_Run] = []
    tokens = [(m.group(), m.start(), m.end()) for m in TOKEN.finditer(text)]
    current: _Run | None = None
    pending_repeat = 1

    def close() -> None:
        nonlocal current, pending_repeat
        if current is not None and current.digits:
            runs.append(current)
        current, pending_repeat = None, 1

    def add(start: int, end: int, digits: str, **counts) -> None:
        nonlocal current, pending_repeat
        if pending_repeat > 1 and len(digits) == 1:
            digits *= pending_repeat
            counts["singles"] = counts.get("singles", 0) + pending_repeat - 1
        pending_repeat = 1
        if current is None:
            current = _Run(start, end)
        current.end = end
        current.digits += digits
        for name, value in counts.items():
            setattr(current, name, (getattr(current, name) or value) if isinstance(value, bool) else getattr(current, name) + value)

    alone = sum(token[0][0].isalnum() for token in tokens) == 1  # the final is one word
    i = 0
    while i < len(tokens):
        word, start, end = tokens[i]
        low = word.lower()
        if len(word) == 1 and word.isalpha() and word.isupper() and (skip := _phonetic(tokens, i)):
            end, i = tokens[i + skip][2], i + skip  # "G for golf", "O for orange", "J as in Juliet": the letter
            add(start, end, word, letters=1)
        elif word.isdigit():
            counts = {"written": len(word), "singles": int(len(word) == 1)}
            if i + 1 < len(tokens) and tokens[i + 1][1] == end and tokens[i + 1][0].lower() in ORDINAL_SUFFIXES:
                counts["ordinal"], end = True, tokens[i + 1][2]
                i += 1
            elif (current is not None and current.written and not current.singles and i >= 2 and tokens[i - 1][0] == ","
                  and tokens[i - 1][1] == tokens[i - 2][2] and len(word) == 3 and tokens[i - 2][0].isdigit() and len(tokens[i - 2][0]) <= 3):
                counts["thousands"] = True  # "3,100": one amount, written with a thousands separator
            add(start, end, word, **counts)
        elif low in DIGIT_WORDS and not (low in ("o", "oh") and current is None and not _digit_follows(tokens, i)) and not (
            low == "o" and not word.islower() and current is None
        ) and not (low == "o" and _hyphen_spelled(tokens, i)):
            add(start, end, str(DIGIT_WORDS[low]), singles=1)
        elif (low in SOUNDALIKES and _digit_follows(tokens, i) and not (current is not None and current.written and not current.singles)
              and (current is not None or i == 0 or tokens[i - 1][0] in JOINERS)
              and not (i + 1 < len(tokens) and tokens[i + 1][0].isdigit())):
            add(start, end, str(SOUNDALIKES[low]), singles=1)  # "fine fine two six"; not "3 to 5"
        elif low in TEEN_WORDS:
            add(start, end, str(TEEN_WORDS[low]), compounds=1)
        elif low in ORDINAL_WORDS and (current is not None and (current.month or current.ordinal) or _date_follows(tokens, i)):
            if i + 1 < len(tokens) and tokens[i + 1][0].lower() == "month":  # "the eleventh month": November
                end, i = tokens[i + 1][2], i + 1
                add(start, end, f"{ORDINAL_WORDS[low]:02d}", month=True)
            else:
                add(start, end, f"{ORDINAL_WORDS[low]:02d}", ordinal=True)
        elif low in TENS_WORDS:
            digits = str(TENS_WORDS[low])
            ordinal = False
            # "forty one", "forty-one", "twenty-ninth": one two-digit number
            j = i + 1
            if j + 1 < len(tokens) and tokens[j][0] == "-":
                j += 1
            nxt = tokens[j][0].lower() if j < len(tokens) else ""
            if nxt in DIGIT_WORDS and nxt not in ("oh", "o", "zero", "nought"):
                digits += str(DIGIT_WORDS[nxt])
                end, i = tokens[j][2], j
            elif nxt in ORDINAL_WORDS and ORDINAL_WORDS[nxt] < 10:
                digits += str(ORDINAL_WORDS[nxt])
                end, i, ordinal = tokens[j][2], j, True
            else:
                digits += "0"
            add(start, end, digits, compounds=1, ordinal=ordinal)
        elif low in MONTHS and _is_month(tokens, i):
            add(start, end, f"{MONTHS[low]:02d}", month=True, months=1)
        elif _single_letter(tokens, i, alone):
            add(start, end, word.upper(), letters=1)
        elif _caps_code(tokens, i):
            add(start, end, word, letters=len(word))
        elif low in ("hundred", "thousand") and current is not None:
            add(start, end, "", compounds=1, magnitude=True)
            if i + 2 < len(tokens) and tokens[i + 1][0].lower() in ("and", "an"):
                i += 1  # "two thousand and two"
        elif low in REPEAT_WORDS and i + 1 < len(tokens) and _is_digit_token(tokens[i + 1][0]):
            if current is None:
                current = _Run(start, end)
            pending_repeat = REPEAT_WORDS[low]
        elif current is not None and (low in JOINERS or (low in ("of", "the", "a") and (current.ordinal or current.month))) and i + 1 < len(tokens):
            pass  # a joiner: the run may go on ("30th of August", "the third of the fifth")
        else:
            close()
        i += 1
    close()
    return runs


def _digit_runs(text: str) -> list[_Run]:
    """The runs that hold digits (what the redaction bench counts as a number said)."""
    return [run for run in _runs(text) if any(ch.isdigit() for ch in run.digits)]


def luhn_valid(digits: str) -> bool:
    """The check digit card numbers carry."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _is_quantity(text: str, run: _Run, topic: str | None) -> bool:
    """An amount, a count, a time, a year or a date: kept (a date of birth or a card's expiry is not)."""
    if run.letters or (run.identifier_shaped and run.length >= 7) or (13 <= run.length <= 19 and run.digits.isdigit() and luhn_valid(run.digits)):
        return False  # a whole identifier is personal whatever is said around it ("charge 4111 ... right now")
    before = _before(text, run)
    if MONEY_BEFORE.search(before) or UNIT_AFTER.match(text[run.end :]) or run.thousands:
        return True
    if run.length <= 4 and not run.singles >= 3 and WHEN_AFTER.match(text[run.end :]):
        return True  # "seven twenty-five now": a time
    if _year(text, run) and topic != "dob":
        return True  # "since 2009", "in twenty nineteen"
    if run.months and run.length == 2 * run.months and (run.months > 1 or MONTH_WHEN.search(before)):
        return True  # "in January", "since March": when, not a birth date
    if topic == "dob":
        return False  # a birth date read in pieces: "Twenty-ninth..." "of February..."
    if run.month and run.length == 2:
        return True  # a month alone ("since March"): no expiry is only that
    if run.magnitude or AGE_BEFORE.search(before) or (run.length == 1 and COUNT_BEFORE.search(before)):
        return True  # "a hundred and twelve", "she's 15", "the last three"
    if not run.identifier_shaped and not run.ordinal and not run.month and ROUGHLY_BEFORE.search(before):
        return True  # "after eleven", "about two-fifty", "under twenty-five"
    if run.ordinal and (topic != "id" or run.month):
        return True  # "the 21st", "the third of May": a date (an expiry has no day), not a birth date
    if topic == "card":
        return False
    if run.month:
        return True
    return False


def _before(text: str, run: _Run, width: int = 40) -> str:
    """The few words before a run: what the patterns ending in ``$`` read (a window, so that reading
    every run of a long final stays linear)."""
    return text[max(0, run.start - width) : run.start]


def _year(text: str, run: _Run) -> bool:
    """A year after "since", "in", "back in"...: 2009, twenty nineteen, nineteen ninety-two."""
    said = run.written == 4 or (run.compounds == 2 and not run.singles and not run.written)
    return said and run.length == 4 and run.digits[:2] in ("19", "20") and bool(YEAR_BEFORE.search(_before(text, run)))


def _kind_of(run: _Run, topic: str | None, carried: int = 0, named: bool = False) -> str | None:
    """What a run is, or None to keep it. ``carried``: identifier digits the same party said just
    before, in its previous final, that this run goes on from. ``named``: the topic was said just
    before it ("sort code eighty-three"), so even a number said as a quantity is that topic's."""
    digits = run.digits
    n = len(digits) + carried
    numerals = sum(ch.isdigit() for ch in digits)
    if topic == "email" and (run.letters or carried):
        return "email"  # an address being spelled
    if run.letters and not numerals:  # a spelling: S-M-I-T-H, "A B N A", "G for golf"
        return "spelled" if run.letters >= 3 or (topic in GUARDED and run.letters >= 2) else None
    if numerals == len(digits) and 13 <= n <= 19 and (topic in (None, "card", "number") or luhn_valid(digits)):
        return "card"
    if run.month or (run.ordinal and topic in ("dob", "id")):
        return "card" if topic == "card" else "dob" if topic in GUARDED else None
    strong = run.identifier_shaped or carried > 0
    if topic in GUARDED or topic == "phone":
        # while a card, an account, an ID or a phone is being given: any part of one, however short; a
        # quantity said in words ("eighty-four", "twenty-two characters") only where a card's expiry or a
        # birth year is said that way
        needed = (3 if run.singles >= 3 else 4) if topic == "phone" else 2
        if n >= needed and (strong or run.compounds >= 2 or topic in ("card", "dob") or named):
            return topic
        return None
    if strong and (n >= 7 or (run.singles >= 4 and run.singles * 2 >= numerals) or (run.letters and n >= 5)):
        return "phone" if numerals == n in (10, 11) and not run.letters else "number"
    if n >= 7 and run.compounds < 2:
        return "phone" if n in (10, 11) else "number"
    if topic == "number" and n >= 3:
        return "number"
    return None


def _named_before(text: str, run: _Run) -> bool:
    """Is the run's topic said right before it, in a few words ("sort code eighty-three", "the
    account is twenty-two")?"""
    window = text[max(0, run.start - 24) : run.start]
    return any(pattern.search(window) for topic, pattern in TOPICS if topic != "number") or bool(
        NUMBER_IS.search(window) or ACRONYM_IS.search(window))


def _mentions(text: str) -> list[tuple[int, int, str]]:
    """Every topic mention in ``text``: (end, start, topic), in order of their ends."""
    return sorted((m.end(), m.start(), topic) for topic, pattern in TOPICS for m in pattern.finditer(text))


def _topic_in(text: str, mentions: list[tuple[int, int, str]] | None = None, upto: int | None = None) -> str | None:
    """The topic last mentioned in ``text`` (before ``upto``). "Number" after a topic ("card number",
    "account number") is that topic."""
    best: tuple[str | None, int] = (None, -1)
    for end, start, topic in _mentions(text) if mentions is None else mentions:
        if upto is not None and end > upto:
            break
        if topic == "number" and best[0] not in (None, "number") and start - best[1] <= 12:
            best = (best[0], end)
        elif (topic == "account" and best[0] in ("dob", "id", "card")) or (topic == "id" and best[0] == "dob"):
            continue  # "the date of birth on the account", "... as on the passport": the birth date is asked for
        else:
            best = (topic, end)
    return best[0]


def _narrower(said: str | None, before: str | None) -> str | None:
    """The topic now: what was just said, unless that is only "number" and a named topic is going on."""
    if said is None or (said == "number" and before is not None):
        return before
    return said


def _only_fillers(text: str) -> bool:
    return all(m.group().lower() in FILLERS or m.group().lower() in JOINERS or not m.group()[0].isalnum() for m in TOKEN.finditer(text))


def _email_from(text: str, start: int) -> int:
    """Where a spoken address that the pattern found from ``start`` really begins: the pieces of its
    name said before ("r dot mcallister seventy-four at..."), number words and spelled letters."""
    tokens = [(m.group(), m.start(), m.end()) for m in TOKEN.finditer(text[:start])]
    begin = start
    i = len(tokens) - 1
    right_is_link = False
    while i >= 0:
        word, s, _ = tokens[i]
        low = word.lower()
        link = low in EMAIL_LINKS
        if link or right_is_link or (i > 0 and tokens[i - 1][0].lower() in ("dot", "underscore")) or (
            low in DIGIT_WORDS or low in TENS_WORDS or low in TEEN_WORDS or word.isdigit() or (len(word) == 1 and word.isalpha())
        ):
            if low in FILLERS and not link:
                break
            begin, right_is_link = s, link
            i -= 1
            continue
        break
    return begin


def _email_to(text: str, end: int) -> int:
    """Where a spoken address really ends: ", G-mail, dot com" said after the host."""
    tokens = [(m.group(), m.start(), m.end()) for m in TOKEN.finditer(text, end)]
    i, stop = 0, end
    while i < len(tokens):
        word = tokens[i][0].lower()
        if word in (",", "-"):
            i += 1
            continue
        if word in ("dot", ".") and i + 1 < len(tokens) and tokens[i + 1][0].isalpha() and len(tokens[i + 1][0]) <= 4:
            stop, i = tokens[i + 1][2], i + 2
            continue
        if len(word) == 1 and word.isalpha() and i + 2 < len(tokens) and tokens[i + 1][0] == "-":  # "G-mail"
            stop, i = tokens[i + 2][2], i + 3
            continue
        break
    return stop


def _joined(text: str, spans: list[Span], about_email: bool) -> list[Span]:
    """Spans in order, a spelling taking the name said just before it, and, while the call is about an
    e-mail, pieces of the address a few words apart taken as one ("T for tangerine, then brown. B...")."""
    spans = sorted(spans, key=lambda s: s.start)
    out: list[Span] = []
    for span in spans:
        if span.kind in ("spelled", "email"):
            letters = "".join(m.group() for m in TOKEN.finditer(text, span.start, span.end) if len(m.group()) == 1 and m.group().isalpha())
            if len(letters) >= 3:
                span = Span(_name_spelled(text, span.start, letters), span.end, span.kind)
        if out and about_email and out[-1].kind == span.kind == "email" and span.start >= out[-1].end and (
            sum(1 for m in TOKEN.finditer(text, out[-1].end, span.start) if m.group()[0].isalnum()) <= 3
        ):
            out[-1] = Span(out[-1].start, span.end, "email")
        elif out and span.start < out[-1].end:
            out[-1] = Span(out[-1].start, max(out[-1].end, span.end), out[-1].kind)
        else:
            out.append(span)
    return out


def _name_spelled(text: str, start: int, spelled: str) -> int:
    """Where the spelling at ``start`` really begins: the name said just before it ("Tan wei ling, all
    one word, T-A-N-W-E-I-L-I-N-G", "Bryan with a Y. B-R-Y-A-N"), if its letters are the spelling's."""
    spelled = spelled.lower()
    words = [(m.group(), m.start()) for m in TOKEN.finditer(text[:start]) if m.group()[0].isalpha()][-8:]
    for first in range(len(words)):
        for last in range(first, min(first + 3, len(words))):
            said = "".join(w for w, _ in words[first : last + 1]).lower()
            if len(said) >= 3 and spelled.startswith(said) and len(said) >= len(spelled) - 1:
                return words[first][1]
    return start


def _linked_words(text: str, dashes: bool = True) -> list[tuple[int, int]]:
    """Words joined by spoken links ("jo dot smith", "priyanka underscore" at the end of a final):
    what an e-mail address in pieces looks like. "Dot" and "underscore" are said of nothing else;
    "dash" is ("a dash of milk"), so it counts only once the call is about an e-mail (``dashes``)."""
    links = ("dot", "underscore", "dash", "hyphen") if dashes else ("dot", "underscore")
    tokens = [(m.group(), m.start(), m.end()) for m in TOKEN.finditer(text)]
    found: list[tuple[int, int]] = []
    i = 0
    while i < len(tokens):
        j = i
        while j + 1 < len(tokens) and tokens[j][0][0].isalnum() and (
            tokens[j + 1][0].lower() in links
            or (dashes and tokens[j + 1][0] == "-" and len(tokens[j][0]) == 1 and j + 2 < len(tokens) and len(tokens[j + 2][0]) == 1)  # S-M-I-T-H
        ):
            j += 2 if j + 2 < len(tokens) and tokens[j + 2][0][0].isalnum() else 1
        if j > i and tokens[i][0].lower() not in FILLERS:
            found.append((tokens[i][1], tokens[j][2]))
            i = j + 1
        elif dashes and tokens[i][0].lower() in links and i + 1 < len(tokens) and tokens[i + 1][0][0].isalnum():
            found.append((tokens[i][1], tokens[i + 1][2]))  # "dot jill": the address goes on from the last final
            i += 2
        else:
            i += 1
    return found


def redact_text(text: str, topic: str | None = None, carried: int = 0) -> tuple[str, list[Span]]:
    """``text`` with personal data replaced by ``[card number]``-style labels, and what was replaced.
    ``topic``: what the call was about just before (None: nothing sensitive). ``carried``: digits of
    an identifier the same party was reading at the end of its previous final."""
    return _redact(text, topic, carried)[:2]


def _redact(text: str, topic: str | None = None, carried: int = 0) -> tuple[str, list[Span], int]:
    """:func:`redact_text`, and the length of an identifier the text ends with (carried to the next final)."""
    spans: list[Span] = []
    taken: list[tuple[int, int]] = []

    def free(start: int, end: int) -> bool:
        return all(end <= s or start >= e for s, e in taken)

    for pattern, kind in ((EMAIL_WRITTEN, "email"), (EMAIL_SPOKEN, "email"), (ID_WRITTEN, "id")):
        for m in pattern.finditer(text):
            start, end = (_email_from(text, m.start()), _email_to(text, m.end())) if pattern is EMAIL_SPOKEN else (m.start(), m.end())
            if free(start, end):
                spans.append(Span(start, end, kind))
                taken.append((start, end))
    about_email = _narrower(_topic_in(text), topic) == "email" or topic == "email"
    pieces = _linked_words(text, dashes=about_email)  # "shauna dot quinn", "priyanka underscore": an address in pieces
    if about_email:
        pieces += [(m.start(), m.end()) for m in HANDLE.finditer(text)]  # "adaeze.okonkwo", "lupe.hernandez1979"
        pieces += [(m.start(), m.end()) for m in DOT_TLD.finditer(text)]  # "dot com." said after the name
        local = LOCAL_THEN_AT.search(text)  # "It's s lumb ninety-nine at": the address goes on in the next final
        if local:  # the whole final up to its "at", but for the words that open it ("It's")
            opening = next((m.start() for m in TOKEN.finditer(text) if m.group().lower() not in FILLERS and m.group()[0].isalnum()), local.start("at"))
            pieces.append((min(opening, local.start("at")), local.end("at")))
    for start, end in pieces:
        if free(start, end):
            spans.append(Span(start, end, "email"))
            taken.append((start, end))
    runs = _runs(text)
    mentions = _mentions(text)
    trailing = 0
    opened: str | None = None  # what a redaction earlier in this final was: the topic for the rest of it
    for index, run in enumerate(runs):
        if not free(run.start, run.end):
            for k, span in enumerate(spans):  # part of an address found above: the address takes all of it
                if span.kind == "email" and span.start < run.end and run.start < span.end:
                    spans[k] = Span(min(span.start, run.start), max(span.end, run.end), "email")
            continue
        if run.digits == "1" and text[run.start : run.end].lower() == "one":
            continue  # "the old one", "that one": a pronoun
        now = _narrower(_topic_in(text, mentions, run.start), opened or topic)
        window = max(0, run.start - 40)
        plus = PLUS_BEFORE.search(text, window, run.start) if run.identifier_shaped or run.written else None
        ending = ENDING_IN.search(text, window, run.start) and run.length >= 2 and not run.letters and (run.identifier_shaped or run.written)
        if plus is None and not ending and _is_quantity(text, run, now):
            continue
        going_on = carried if index == 0 and _only_fillers(text[: run.start]) else 0
        named = _named_before(text, run)
        kind = _kind_of(run, now, going_on, named=named)
        if kind is None and len(runs) == 1 and _only_fillers(text[: run.start] + " " + text[run.end :]) and (
            run.identifier_shaped and run.length >= 3 or run.letters >= 2 or (now in GUARDED and (run.letters or run.length >= 2))
            or (now == "email" and (run.letters >= 2 or run.singles >= 2 or run.written))
        ):
            kind = "email" if now == "email" else "number"  # a final that is only a group of digits or letters: part of something being read out
        if kind is None and plus is not None:
            kind = "phone"  # "plus 65", "plus six five": a country code
        if kind is None and ending:
            kind = now if now in (*GUARDED, "phone") else "number"  # "the card ending 8835": part of one
        if kind is None and named and run.length >= 2 and (run.identifier_shaped or run.written):
            kind = now if now in (*GUARDED, "phone") else "number"  # "TRN is one one seven"
        if kind is not None:
            start = plus.start() if plus is not None else run.start  # "plus nine one...": the country code's plus
            spans.append(Span(start, run.end, kind))
            taken.append((start, run.end))
            if kind in (*GUARDED, "phone", "number"):
                opened = kind
        if index == len(runs) - 1 and _only_fillers(text[run.end :]) and (run.identifier_shaped or kind is not None):
            trailing = going_on + run.length
    spans = _joined(text, spans, about_email)
    out, last = [], 0
    for span in spans:
        out.append(text[last : span.start])
        out.append(LABELS[span.kind])
        last = span.end
    out.append(text[last:])
    return "".join(out), spans, trailing


class Redactor:
    """One call's redaction: remembers what the call was about (the last sensitive topic, for
    ``context_seconds`` of call audio) across both parties' segments."""

    def __init__(self, context_seconds: float = 30.0, carry_seconds: float = 15.0) -> None:
        self.context_seconds = context_seconds
        self.carry_seconds = carry_seconds
        self._topic: str | None = None
        self._until = -1.0
        # per party: the identifier its last final ended with (when, how many digits), carried into
        # its next final: a card read in groups over several finals is one number
        self._tail: dict[str, tuple[float, int]] = {}

    def topic(self, at: float) -> str | None:
        return self._topic if at <= self._until else None

    def guarded_until(self, at: float) -> float | None:
        """While a card, account, ID or birth date is being given (its topic open at call time ``at``),
        until when; else None. The kept recording silences the customer for that long."""
        return self._until if self.topic(at) in GUARDED else None

    def text(self, text: str, at: float, remember: bool = True, speaker: str | None = None) -> tuple[str, list[Span]]:
        """``text`` (said up to call time ``at``, by ``speaker``) redacted; what it says about the topic,
        and the identifier it ends with, are remembered."""
        carried = 0
        if speaker is not None and speaker in self._tail:
            when, digits = self._tail[speaker]
            carried = digits if at - when <= self.carry_seconds else 0
        redacted, spans, trailing = _redact(text, self.topic(at), carried)
        if not remember:
            return redacted, spans
        if speaker is not None:
            self._tail[speaker] = (at, trailing)
        numbers = [span.kind for span in spans if span.kind not in ("email", "spelled")]
        said = _topic_in(text)
        if numbers or said is not None or spans:  # a redaction or a mention keeps the topic open
            going = numbers[-1] if numbers else "email" if any(span.kind == "email" for span in spans) else self.topic(at)
            self._topic = _narrower(said, going)
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
        speaker = message.get("speaker") if isinstance(message.get("speaker"), str) else None
        redacted, spans = self.text(message[field], at, remember=kind == "transcript", speaker=speaker)
        if not spans:
            return message, []
        return {**message, field: redacted}, spans
