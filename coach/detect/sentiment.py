"""Per-segment sentiment, -1 (most negative) to 1 (most positive).

Two kinds of model give it:

- :class:`SentimentHead`, the offline default: a small softmax head over sentence embeddings
  (negative / neutral / positive), trained by the project (``make train``) on the contact-centre
  utterances it wrote in ``models/data/sentiment.csv``. Sentiment = P(positive) - P(negative).
- :class:`ClassifierSentiment`: any Hugging Face sequence-classification model, by name or folder.
  Its labels are read from its config: negative/neutral/positive names, star ratings, emotions, or
  the ``LABEL_0..2`` convention of three-way sentiment models.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from coach.detect.encoder import MAX_TOKENS, load_transformers
from coach.defaults import SENTIMENT_HEAD
from coach.errors import ModelError

if TYPE_CHECKING:
    from coach.models import TextModel

DEFAULT_HEAD = SENTIMENT_HEAD
HEAD_CLASSES = ("negative", "neutral", "positive")

_NEGATIVE = re.compile(r"neg|anger|angry|annoy|disgust|fear|sad|disappoint|frustrat|disapprov", re.I)
_POSITIVE = re.compile(r"pos|joy|love|gratitude|optimis|admiration|approval|happ|relief|excite", re.I)
_STARS = re.compile(r"^(\d)\s*stars?$", re.I)


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


class SentimentHead:
    """A softmax layer over unit-length sentence embeddings."""

    def __init__(self, weights: np.ndarray, bias: np.ndarray, classes: tuple[str, ...] = HEAD_CLASSES, encoder: str = "",
                 adapter: str = "") -> None:
        self.weights = weights  # (classes, dimensions)
        self.bias = bias
        self.classes = classes
        self.encoder = encoder
        self.adapter = adapter  # the encoder adapter (file beside the head) it was trained through, if any
        self._neg, self._pos = classes.index("negative"), classes.index("positive")

    @classmethod
    def load(cls, path: Path, dimensions: int) -> "SentimentHead":
        try:
            data = json.loads(Path(path).read_text())
            weights = np.asarray(data["weights"], dtype=np.float32)
            bias = np.asarray(data["bias"], dtype=np.float32)
            classes = tuple(data["classes"])
        except FileNotFoundError:
            raise ModelError(f"sentiment head {path} not found: run `make train` to build it") from None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ModelError(f"sentiment head {path} is unreadable ({exc}): run `make train` to rebuild it") from None
        if weights.shape != (len(classes), dimensions) or bias.shape != (len(classes),):
            raise ModelError(
                f"sentiment head {path} expects {weights.shape[-1]}-dimensional embeddings, the encoder gives "
                f"{dimensions}: train a head for this encoder (`make train`) or use the default encoder"
            )
        return cls(weights, bias, classes, data.get("encoder", ""), str(data.get("adapter") or ""))

    def probabilities(self, embeddings: np.ndarray) -> np.ndarray:
        return softmax(embeddings @ self.weights.T + self.bias)

    def score(self, embeddings: np.ndarray) -> np.ndarray:
        p = self.probabilities(embeddings)
        return p[:, self._pos] - p[:, self._neg]


def label_values(id2label: dict[int, str]) -> np.ndarray:
    """A sentiment value in [-1, 1] for each class of a classifier, from its label names."""
    names = [str(id2label[i]) for i in range(len(id2label))]
    stars = [_STARS.match(n.strip()) for n in names]
    if all(stars):
        counts = [int(m.group(1)) for m in stars]
        low, high = min(counts), max(counts)
        return np.array([2 * (c - low) / (high - low) - 1 for c in counts])
    if all(re.fullmatch(r"LABEL_\d+", n) for n in names) and len(names) in (2, 3):
        return np.linspace(-1, 1, len(names))  # the negative..positive convention of sentiment models
    values = np.array([-1.0 if _NEGATIVE.search(n) else 1.0 if _POSITIVE.search(n) else 0.0 for n in names])
    if not (values < 0).any() or not (values > 0).any():
        raise ModelError(f"cannot tell which labels of this classifier are negative and positive: {names}")
    return values


class ClassifierSentiment:
    """Any Hugging Face sequence-classification model: sentiment = expected label value."""

    def __init__(self, model: TextModel, threads: int = 1) -> None:
        import torch
        import transformers


        torch.set_num_threads(threads)
        self._torch = torch
        self._tokenizer, self._model = load_transformers(
            model, transformers.AutoModelForSequenceClassification, "sentiment model"
        )
        self.values = label_values(self._model.config.id2label)

    def score(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros(0)
        batch = self._tokenizer(texts, padding=True, truncation=True, max_length=MAX_TOKENS, return_tensors="pt")
        with self._torch.inference_mode():
            logits = self._model(**batch).logits.float().numpy()
        return softmax(logits) @ self.values


# A customer line that raises a trigger (asks for a manager, threatens to leave, says they are not
# being heard) is a dissatisfied line, however polite its words ("Could I speak to your manager,
# please?"): its reading is at most the head's mean reading of the project's own angry and
# frustrated customer lines (models/data/sentiment.csv).
DISSATISFIED = -0.74


class CallMood:
    """A party's mood carries over from one segment to the next: "Okay, we'll see." after three angry
    turns is not a neutral line. Each final's sentiment is its own reading blended with the party's
    running mood: ``carry`` of the mood so far, ``1 - carry`` of the segment (0: each segment alone)."""

    def __init__(self, carry: float = 0.5) -> None:
        self.carry = carry
        self._mood: dict[str, float] = {}

    def update(self, speaker: str, reading: float, dissatisfied: bool = False) -> float:
        """``dissatisfied``: the segment raised a customer trigger (see ``DISSATISFIED``)."""
        if dissatisfied:
            reading = min(reading, DISSATISFIED)
        before = self._mood.get(speaker)
        mood = reading if before is None else self.carry * before + (1 - self.carry) * reading
        self._mood[speaker] = mood
        return mood
