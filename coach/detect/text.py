"""What a final segment says, read by the text models: its sentiment and the exemplars it is close to.
(``coach.models.text_analyzer`` loads the models it is given.)

One :class:`TextAnalyzer` is loaded per process and shared by every call. Its model calls run in
its own single-thread executor (the models are small; one sentence costs ~10 ms here), so the
event loop never waits on them and they never compete with the speech model for more than a core.
The trigger heads are an ensemble: each member reads a segment's sentences through its own tuned
encoder (six by default, the first shared with sentiment), so a segment costs six passes.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from coach.detect.custom import MeaningBank, match_meaning, meaning_banks
from coach.detect.exemplars import ExemplarIndex, ExemplarMatch, split_sentences


@dataclass(frozen=True)
class TextReading:
    sentiment: float | None
    matches: list[ExemplarMatch] = field(default_factory=list)
    seconds: float = 0.0  # model time spent on this segment


class TextAnalyzer:
    def __init__(self, encoder, head=None, classifier=None, index: ExemplarIndex | None = None, mood_carry: float = 0.0,
                 trigger_encoders: list | None = None) -> None:
        self.encoder = encoder
        self.trigger_encoders = trigger_encoders or [encoder]  # one per member of the trigger heads; ``encoder`` is read once
        self.mood_carry = mood_carry  # each call's CallMood blends this much of a party's mood into the next segment
        self.head = head  # SentimentHead over the encoder's embeddings, or
        self.classifier = classifier  # a sequence-classification model of its own
        self.index = index
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="text")

    async def read(self, speaker: str, text: str, banks: Sequence[MeaningBank] = ()) -> TextReading:
        return await asyncio.get_running_loop().run_in_executor(self._executor, self.read_now, speaker, text, banks)

    async def banks(self, signals) -> list[MeaningBank]:
        """The playbook's own signals written with examples (``Playbook.meaning_inputs()``), embedded."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, meaning_banks, signals, self.encoder.embed)

    def read_now(self, speaker: str, text: str, banks: Sequence[MeaningBank] = ()) -> TextReading:
        """Blocking: sentiment of the whole segment, exemplar matches of each sentence, and the
        sentences close to the examples of the playbook's own signals (``banks``)."""
        started = time.perf_counter()
        if not text.strip():
            return TextReading(None)
        sentences = split_sentences(text) if (self.index is not None or banks) else []
        texts = [text] + [s for s in sentences if s != text]
        vectors = self.encoder.embed(texts) if (self.head is not None or sentences) else np.zeros((0, 0))
        sentiment = None
        if self.head is not None:
            sentiment = float(self.head.score(vectors[:1])[0])
        elif self.classifier is not None:
            sentiment = float(self.classifier.score([text])[0])
        matches: list[ExemplarMatch] = []
        if self.index is not None and sentences:
            rows = [texts.index(s) for s in sentences]
            members = np.stack([vectors[rows] if e is self.encoder else e.embed(sentences) for e in self.trigger_encoders])
            matches = self.index.match(speaker, sentences, members)
        if banks and sentences:
            matches += match_meaning(banks, speaker, sentences, vectors[[texts.index(s) for s in sentences]])
        return TextReading(sentiment, matches, time.perf_counter() - started)

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
