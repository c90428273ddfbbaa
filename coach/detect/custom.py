"""A team's own signals, written in the playbook (``signals:``) without code (issue 32).

A signal's ``phrases`` are words or short phrases, matched case-insensitively on whole words. A
word may end in ``*`` (``cancel*``: cancel, cancels, cancellation), and a lone ``*`` stands for
any one word (``cheaper * elsewhere``). Phrases are not regular expressions: a team cannot write
one that backtracks. Each phrase is matched by scanning the words of a transcript once per starting
word, with at most ``MAX_WORDS`` words compared each time.

A signal may also have ``examples`` (and ``not`` examples): lines that carry it, and near misses
that do not. A sentence fires the signal when it is at least ``threshold`` similar (cosine of the
text encoder's sentence embeddings) to its nearest example, and nearer to that than to any ``not``
example. No training: the examples are embedded when the playbook is loaded. The default threshold
was calibrated on the project's own labelled lines (``benchmarks/custom_bench.py``).

Two kinds:
- ``said`` (the default): the signal fires when one of its phrases is heard from its speaker.
- ``not_said``: a compliance check. The signal fires when the call reaches ``within`` seconds and
  its speaker (the agent, for the recording disclosure) has not said any of its phrases by then.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from coach.detect.exemplars import ExemplarMatch
from coach.events import SignalEvent, TranscriptEvent

MAX_WORDS = 8  # words in one phrase
MAX_WORD = 40  # characters in one word
PHRASE_SCORE = 0.8
WILD = "*"
MEANING_THRESHOLD = 0.44  # cosine similarity to the nearest example, calibrated: benchmarks/custom_bench.py, docs/benchmarks.md


class UnsafePhrase(ValueError):
    """A phrase that cannot be matched safely, or could match almost anything."""


def words(text: str) -> list[str]:
    """Lower-case words: runs of letters, digits and apostrophes (a hyphen breaks words: "opt-out"
    is "opt out"; a curly apostrophe is a straight one). One pass, no regex."""
    out, word = [], []
    for ch in text.lower().replace("\u2019", "'"):
        if ch.isalnum() or ch == "'":
            word.append(ch)
        elif word:
            out.append("".join(word).strip("'"))
            word = []
    if word:
        out.append("".join(word).strip("'"))
    return [w for w in out if w]


@dataclass(frozen=True)
class Phrase:
    text: str  # as the team wrote it
    parts: tuple[str, ...]  # each a word, a prefix ending in "*", or "*"

    def find(self, heard: list[str]) -> tuple[int, int] | None:
        """The first ``(start, end)`` word span of ``heard`` this phrase matches."""
        size = len(self.parts)
        for start in range(len(heard) - size + 1):
            if all(_word_matches(part, heard[start + k]) for k, part in enumerate(self.parts)):
                return start, start + size
        return None


def _word_matches(part: str, word: str) -> bool:
    if part == WILD:
        return True
    if part.endswith(WILD):
        return word.startswith(part[:-1])
    return word == part


def compile_phrase(text: str) -> Phrase:
    """A phrase the matcher can use: a readable :class:`UnsafePhrase` if it is not one."""
    if not isinstance(text, str) or not text.strip():
        raise UnsafePhrase("an empty phrase")
    raw = text.lower().replace("\u2019", "'").replace("-", " ").split()
    if len(raw) > MAX_WORDS:
        raise UnsafePhrase(f"{text!r} has more than {MAX_WORDS} words")
    parts = []
    for token in raw:
        if len(token) > MAX_WORD:
            raise UnsafePhrase(f"{text!r}: a word of more than {MAX_WORD} characters")
        if token == WILD:
            parts.append(WILD)
            continue
        stem, wild = (token[:-1], True) if token.endswith(WILD) else (token, False)
        if WILD in stem or not stem.strip("'") or any(not (ch.isalnum() or ch == "'") for ch in stem):
            raise UnsafePhrase(f"{text!r}: {token!r} is not a word (letters, digits, ' and - only; * only at a word's end, or alone)")
        if wild and len(stem.strip("'")) < 3:
            raise UnsafePhrase(f"{text!r}: {token!r} would match too many words (three letters at least before the *)")
        parts.append(stem.strip("'") + (WILD if wild else ""))
    if all(part == WILD for part in parts):
        raise UnsafePhrase(f"{text!r} would match any words")
    return Phrase(text, tuple(parts))


@dataclass(frozen=True)
class CustomSignal:
    label: str
    speaker: str  # "agent", "customer" or "any"
    phrases: tuple[Phrase, ...]
    kind: str = "said"  # or "not_said"
    within: float = 0.0  # not_said: seconds of the call by which a phrase must have been said

    def hears(self, speaker: str) -> bool:
        """Whose words it reads: a mono call's one mixed party may be anyone."""
        return self.speaker in ("any", speaker) or speaker == "mixed"

    def match(self, text: str) -> Phrase | None:
        return self.match_words(words(text))

    def match_words(self, heard: list[str]) -> Phrase | None:
        return next((p for p in self.phrases if p.find(heard) is not None), None)


@dataclass(frozen=True)
class MeaningBank:
    """One signal's examples and near misses, embedded."""

    label: str
    speaker: str
    examples: tuple[str, ...]
    example_vectors: np.ndarray = field(repr=False)
    not_vectors: np.ndarray = field(repr=False)
    threshold: float = MEANING_THRESHOLD


def meaning_banks(signals: Iterable[tuple[str, str, Sequence[str], Sequence[str], float | None]],
                  embed: Callable[[list[str]], np.ndarray]) -> list[MeaningBank]:
    """``(label, speaker, examples, not_examples, threshold)`` of each signal with examples -> its bank
    (blocking: the encoder embeds every example once)."""
    banks = []
    for label, speaker, examples, nots, threshold in signals:
        if examples:
            banks.append(MeaningBank(label, speaker, tuple(examples), embed(list(examples)),
                                     embed(list(nots)) if nots else np.zeros((0, 1), np.float32),
                                     MEANING_THRESHOLD if threshold is None else threshold))
    return banks


def match_meaning(banks: Sequence[MeaningBank], speaker: str, sentences: list[str], vectors: np.ndarray) -> list[ExemplarMatch]:
    """The banks a party's sentences (``vectors``: their unit-length embeddings) come close enough to:
    the best sentence of each, with its nearest example as the evidence."""
    out = []
    for bank in banks:
        if bank.speaker not in ("any", speaker) or not sentences:
            continue
        near = vectors @ bank.example_vectors.T  # sentences x examples
        best = near.max(axis=1)
        if bank.not_vectors.shape[0]:
            best = np.where(best > (vectors @ bank.not_vectors.T).max(axis=1), best, -1.0)
        i = int(best.argmax())
        if best[i] >= bank.threshold:
            j = int(near[i].argmax())
            out.append(ExemplarMatch(bank.label, float(best[i]), sentences[i], bank.examples[j], float(best[i])))
    return out


class CustomSignals:
    """One call's custom signals: ``said`` ones on transcripts (interims too, once per utterance and
    label), ``not_said`` ones when their window closes."""

    def __init__(self, signals: Iterable[CustomSignal]) -> None:
        signals = list(signals)
        self.said = [s for s in signals if s.kind == "said"]
        self.pending = {s.label: s for s in signals if s.kind == "not_said"}  # windows still open, phrase not yet heard
        self._fired: dict[str, set[str]] = {}
        self._closed: set[str] = set()

    def heard_final(self, event: TranscriptEvent) -> None:
        """A final, as soon as it is made (before the text models read it): a ``not_said`` phrase in
        it, from speech that began inside the window, was said in time."""
        if not event.final or not event.text or not self.pending:
            return
        heard = words(event.text)
        for label, signal in list(self.pending.items()):
            if signal.hears(event.speaker) and event.start <= signal.within and signal.match_words(heard) is not None:
                del self.pending[label]

    def on_transcript(self, event: TranscriptEvent, matches: Sequence[ExemplarMatch] = ()) -> list[SignalEvent]:
        """Phrases heard in ``event``, and ``matches`` by meaning (of this call's banks) read off it."""
        if event.id in self._closed:
            return []
        if not event.text:
            if event.final:
                self._fired.pop(event.id, None)
                self._closed.add(event.id)
            return []
        out: list[SignalEvent] = []
        fired = self._fired.setdefault(event.id, set())
        heard = words(event.text)
        for m in matches:
            if m.label not in fired:
                fired.add(m.label)
                out.append(SignalEvent(event.at, m.label, event.speaker, event.start, event.end, round(m.score, 3), m.evidence,
                                       f"{m.label}.examples"))
        for signal in self.said:
            if signal.label in fired or not signal.hears(event.speaker):
                continue
            phrase = signal.match_words(heard)
            if phrase is not None:
                fired.add(signal.label)
                out.append(SignalEvent(event.at, signal.label, event.speaker, event.start, event.end, PHRASE_SCORE,
                                       f"said: {phrase.text}", f"{signal.label}.phrase"))
        if event.final:
            self.heard_final(event)
            self._fired.pop(event.id, None)
            self._closed.add(event.id)
        return out

    def close(self, now: float) -> list[SignalEvent]:
        """The call ended, every final read: a window the call reached closes now. A call that ended
        inside a window (a customer who hung up at 10 s) is not flagged for it."""
        return self.tick(now, None)

    def tick(self, now: float, waiting_since: float | None = None) -> list[SignalEvent]:
        """``now``: call time reached. A window that has closed fires, unless speech that began in it
        still waits for its final (``waiting_since``: where the oldest such utterance began)."""
        out = []
        for label, signal in list(self.pending.items()):
            if now < signal.within or (waiting_since is not None and waiting_since <= signal.within):
                continue
            del self.pending[label]
            who = "the agent" if signal.speaker == "agent" else "the customer" if signal.speaker == "customer" else "anyone"
            out.append(SignalEvent(now, label, signal.speaker if signal.speaker != "any" else "call", 0.0, signal.within, PHRASE_SCORE,
                                   f"not said by {who} in the first {signal.within:g} s: {signal.phrases[0].text}", f"{label}.not_said"))
        return out
