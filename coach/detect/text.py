"""What a final segment says, read by the text models: its sentiment and the trigger labels it carries.

One :class:`TextAnalyzer` is loaded per process and shared by every call. Its model calls run in
its own single-thread executor, so the event loop never waits on them and they never compete with
the speech model for more than a core. One tuned encoder (``make train``) reads each sentence of a
segment once; the same embeddings serve the sentiment head and the trigger model, which reads them
beside the other party's previous segment in the call (its embeddings kept from when it was read).
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from coach.detect.exemplars import split_sentences
from coach.detect.turns import ExemplarMatch, TurnReader, turn_vector
from coach.errors import ModelError

REMEMBERED_SENTENCES = 4096  # embeddings kept for the next segment's context (an LRU, per process)


@dataclass(frozen=True)
class TextReading:
    sentiment: float | None
    matches: list[ExemplarMatch] = field(default_factory=list)
    seconds: float = 0.0  # model time spent on this segment


class TextAnalyzer:
    def __init__(self, encoder, head=None, classifier=None, reader: TurnReader | None = None, mood_carry: float = 0.0) -> None:
        self.encoder = encoder
        self.mood_carry = mood_carry  # each call's CallMood blends this much of a party's mood into the next segment
        self.head = head  # SentimentHead over the encoder's embeddings, or
        self.classifier = classifier  # a sequence-classification model of its own
        self.reader = reader
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="text")
        self._remembered: OrderedDict[str, np.ndarray] = OrderedDict()  # only touched in the executor's thread

    async def read(self, speaker: str, text: str, context: str | None = None) -> TextReading:
        return await asyncio.get_running_loop().run_in_executor(self._executor, self.read_now, speaker, text, context)

    def _embed(self, sentences: list[str]) -> np.ndarray:
        """Each sentence's embedding, read once: a segment's sentences are the next one's context."""
        new = [s for s in dict.fromkeys(sentences) if s not in self._remembered]
        if new:
            for s, v in zip(new, self.encoder.embed(new)):
                self._remembered[s] = v
        for s in sentences:
            self._remembered.move_to_end(s)
        while len(self._remembered) > REMEMBERED_SENTENCES:
            self._remembered.popitem(last=False)
        return np.stack([self._remembered[s] for s in sentences])

    def read_now(self, speaker: str, text: str, context: str | None = None) -> TextReading:
        """Blocking: sentiment of the segment (the mean of its sentences), the labels of its sentences,
        read beside ``context`` (the other party's previous segment)."""
        started = time.perf_counter()
        if not text.strip():
            return TextReading(None)
        sentences = split_sentences(text) or [text.strip()]
        vectors = self._embed(sentences) if (self.head is not None or self.reader is not None) else None
        sentiment = None
        if self.head is not None:
            sentiment = float(self.head.score(turn_vector(vectors)[None])[0])
        elif self.classifier is not None:
            sentiment = float(self.classifier.score([text])[0])
        matches: list[ExemplarMatch] = []
        if self.reader is not None:
            said = split_sentences(context) if context and context.strip() else []
            matches = self.reader.match(speaker, sentences, vectors, turn_vector(self._embed(said)) if said else None)
        return TextReading(sentiment, matches, time.perf_counter() - started)

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)


def load_text_analyzer(settings, models_dir: Path) -> TextAnalyzer:
    """Load the encoder (tuned as ``make train`` left it), the sentiment model and the trigger model
    that ``settings`` (TextSettings) name."""
    from coach.detect import adapter as lowrank
    from coach.detect.encoder import TextEncoder
    from coach.detect.exemplars import cached_embed, load_exemplars
    from coach.detect.sentiment import ClassifierSentiment, SentimentHead
    from coach.detect.turns import TurnHead
    from coach.models import resolve_text_model

    head = classifier = turns = None
    adapters: dict[str, Path | None] = {}  # the adapter each head was trained through
    if settings.similarity:
        turns, meta = TurnHead.load(settings.triggers)
        if meta.get("encoder") != settings.encoder:
            raise ModelError(f"the trigger model {settings.triggers} was trained on the encoder {meta.get('encoder')!r}, "
                             f"not {settings.encoder!r}: run `make train` or set COACH_TEXT__ENCODER={meta.get('encoder')}")
        adapters[str(settings.triggers)] = Path(settings.triggers).with_name(meta["adapter"]) if meta.get("adapter") else None
    encoder = TextEncoder(resolve_text_model(settings.encoder, models_dir), settings.threads)
    if settings.sentiment == "head":
        head = SentimentHead.load(settings.head, encoder.dimensions)
        adapters[str(settings.head)] = Path(settings.head).with_name(head.adapter) if head.adapter else None
    elif settings.sentiment != "none":
        classifier = ClassifierSentiment(resolve_text_model(settings.sentiment, models_dir), settings.threads)
    if len({adapter and lowrank.fingerprint(adapter) for adapter in adapters.values()}) > 1:
        raise ModelError(f"{' and '.join(adapters)} were trained through different encoder adapters: run `make train`")
    adapter = next((a for a in adapters.values() if a is not None), None)
    if adapter is not None:
        encoder.tune(adapter)  # the tuned encoder both heads were trained on
    reader = None
    if turns is not None:
        sets = load_exemplars(settings.exemplars)
        embed = cached_embed(encoder.embed, encoder.name, models_dir / "text-cache")
        reader = TurnReader(turns, {label: s.examples for label, s in sets.items()},
                            {label: embed(s.examples) for label, s in sets.items()})
    return TextAnalyzer(encoder, head, classifier, reader, settings.mood_carry)
