"""What a final segment says, read by the text models: its sentiment and the exemplars it is close to.

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
from pathlib import Path

import numpy as np

from coach.detect.custom import MeaningBank, match_meaning, meaning_banks
from coach.detect.exemplars import ExemplarIndex, ExemplarMatch, split_sentences
from coach.errors import ModelError


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


def load_text_analyzer(settings, models_dir: Path) -> TextAnalyzer:
    """Load the encoder, the sentiment model and the exemplar index that ``settings`` (TextSettings) name."""
    from coach.detect import adapter as lowrank
    from coach.detect.encoder import TextEncoder
    from coach.detect.exemplars import cached_embed, load_exemplars, load_heads
    from coach.detect.sentiment import ClassifierSentiment, SentimentHead
    from coach.models import resolve_text_model

    plain = TextEncoder(resolve_text_model(settings.encoder, models_dir), settings.threads)
    head = classifier = heads = None
    adapters: dict[str, Path | None] = {}  # the adapter each head was trained through
    if settings.sentiment == "head":
        head = SentimentHead.load(settings.head, plain.dimensions)
        adapters[str(settings.head)] = Path(settings.head).with_name(head.adapter) if head.adapter else None
    elif settings.sentiment != "none":
        classifier = ClassifierSentiment(resolve_text_model(settings.sentiment, models_dir), settings.threads)
    members: list[Path | None] = []
    if settings.similarity:
        heads, members = load_heads(settings.triggers)
        adapters[str(settings.triggers)] = members[0]
    if len({adapter and lowrank.fingerprint(adapter) for adapter in adapters.values()}) > 1:
        raise ModelError(f"{' and '.join(adapters)} were trained through different encoder adapters: run `make train`")
    adapter = next((a for a in adapters.values() if a is not None), None)
    encoder = plain.adapted(adapter) if adapter is not None else plain  # the tuned encoder both heads were trained on
    trigger_encoders = [encoder] + [plain.adapted(a) if a is not None else plain for a in members[1:]]
    index = None
    if heads is not None:
        embeds = [cached_embed(e.embed, e.name, models_dir / "text-cache") for e in trigger_encoders]
        index = ExemplarIndex(load_exemplars(settings.exemplars), heads, embeds)
    return TextAnalyzer(encoder, head, classifier, index, settings.mood_carry, trigger_encoders)
