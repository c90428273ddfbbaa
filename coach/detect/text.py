"""What a final segment says, read by the text models: its sentiment and the exemplars it is close to.

One :class:`TextAnalyzer` is loaded per process and shared by every call. Its model calls run in
its own single-thread executor (the models are small; one sentence costs ~10 ms here), so the
event loop never waits on them and they never compete with the speech model for more than a core.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from coach.detect.exemplars import ExemplarIndex, ExemplarMatch, split_sentences
from coach.errors import ModelError


@dataclass(frozen=True)
class TextReading:
    sentiment: float | None
    matches: list[ExemplarMatch] = field(default_factory=list)
    seconds: float = 0.0  # model time spent on this segment


class TextAnalyzer:
    def __init__(self, encoder, head=None, classifier=None, index: ExemplarIndex | None = None, mood_carry: float = 0.0) -> None:
        self.encoder = encoder
        self.mood_carry = mood_carry  # each call's CallMood blends this much of a party's mood into the next segment
        self.head = head  # SentimentHead over the encoder's embeddings, or
        self.classifier = classifier  # a sequence-classification model of its own
        self.index = index
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="text")

    async def read(self, speaker: str, text: str) -> TextReading:
        return await asyncio.get_running_loop().run_in_executor(self._executor, self.read_now, speaker, text)

    def read_now(self, speaker: str, text: str) -> TextReading:
        """Blocking: sentiment of the whole segment, exemplar matches of each sentence."""
        started = time.perf_counter()
        if not text.strip():
            return TextReading(None)
        sentences = split_sentences(text) if self.index is not None else []
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
            matches = self.index.match(speaker, sentences, vectors[rows])
        return TextReading(sentiment, matches, time.perf_counter() - started)

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)


def load_text_analyzer(settings, models_dir: Path) -> TextAnalyzer:
    """Load the encoder, the sentiment model and the exemplar index that ``settings`` (TextSettings) name."""
    from coach.detect import adapter as lowrank
    from coach.detect.encoder import TextEncoder
    from coach.detect.exemplars import cached_embed, load_exemplars, load_heads
    from coach.detect.sentiment import ClassifierSentiment, SentimentHead
    from coach.models import resolve_text_model

    encoder = TextEncoder(resolve_text_model(settings.encoder), settings.threads)
    head = classifier = heads = None
    adapters: dict[str, Path | None] = {}  # the adapter each head was trained through
    if settings.sentiment == "head":
        head = SentimentHead.load(settings.head, encoder.dimensions)
        adapters[str(settings.head)] = Path(settings.head).with_name(head.adapter) if head.adapter else None
    elif settings.sentiment != "none":
        classifier = ClassifierSentiment(resolve_text_model(settings.sentiment), settings.threads)
    if settings.similarity:
        heads, adapters[str(settings.triggers)] = load_heads(settings.triggers)
    if len({adapter and lowrank.fingerprint(adapter) for adapter in adapters.values()}) > 1:
        raise ModelError(f"{' and '.join(adapters)} were trained through different encoder adapters: run `make train`")
    adapter = next((a for a in adapters.values() if a is not None), None)
    if adapter is not None:
        encoder = encoder.adapted(adapter)  # the tuned encoder both heads were trained on
    index = None
    if heads is not None:
        embed = cached_embed(encoder.embed, encoder.name, models_dir / "text-cache")
        index = ExemplarIndex(load_exemplars(settings.exemplars), heads, embed)
    return TextAnalyzer(encoder, head, classifier, index, settings.mood_carry)

