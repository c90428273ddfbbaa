"""The candidate turn model's reading (not adopted, docs/decisions/0003-trigger-ensemble-stays.md):
one tuned encoder reads each sentence of a turn beside the other party's turn before it, and one
small network says which labels it carries.

The head's input for a sentence ``u`` in the context ``c`` (the other party's previous turn, the mean
of its sentences' embeddings; zeros when there is none) is ``[u, c, u * c]``; a hidden layer, then one
sigmoid per label, each with its threshold (``turn_model_training.py``). Kept for
``benchmarks/writers_bench.py`` (leave-one-writer-out and the held-out sets), which trains and scores
it in memory.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from coach.errors import ModelError

HIDDEN = 256
SCALE = 20.0  # unit-length embeddings times this (their product times this and the root of their size) are the head's input


@dataclass(frozen=True)
class ExemplarMatch:
    label: str
    score: float  # the head's probability of the label
    sentence: str
    exemplar: str  # the nearest example of the label: why it fired
    similarity: float

    @property
    def evidence(self) -> str:
        return f'"{self.sentence}" ~ "{self.exemplar}" (similarity {self.similarity:.0%})'


def features(sentences: np.ndarray, context: np.ndarray | None) -> np.ndarray:
    """The head's input, ``(sentences, 3 * dim)``: each sentence, the context, and their product."""
    c = np.zeros(sentences.shape[1], sentences.dtype) if context is None else context.astype(sentences.dtype)
    c = np.broadcast_to(c, sentences.shape)
    return np.concatenate([SCALE * sentences, SCALE * c, SCALE * np.sqrt(sentences.shape[1]) * sentences * c], axis=1)


def turn_vector(sentences: np.ndarray) -> np.ndarray | None:
    """A turn's embedding: the unit-length mean of its sentences' (the context of the next turn)."""
    if not len(sentences):
        return None
    mean = sentences.mean(axis=0)
    return mean / max(float(np.linalg.norm(mean)), 1e-9)


@dataclass
class TurnHead:
    labels: list[str]  # every trigger label, the columns of the output
    speakers: dict[str, str]  # label -> the party it belongs to
    w1: np.ndarray  # (3 * dim, HIDDEN)
    b1: np.ndarray
    w2: np.ndarray  # (HIDDEN, labels)
    b2: np.ndarray
    thresholds: dict[str, float]  # a label fires at this probability or above (above 1: switched off)

    @property
    def dimensions(self) -> int:
        return self.w1.shape[0] // 3

    def probabilities(self, sentences: np.ndarray, context: np.ndarray | None) -> np.ndarray:
        """``(sentences, labels)``: each label's probability, per sentence, in its context."""
        hidden = features(sentences, context) @ self.w1 + self.b1
        hidden = 0.5 * hidden * (1.0 + np.tanh(0.7978845608 * (hidden + 0.044715 * hidden**3)))  # GELU (tanh form)
        return 1.0 / (1.0 + np.exp(-(hidden @ self.w2 + self.b2)))

    @classmethod
    def load(cls, path: Path) -> tuple[TurnHead, dict]:
        """The head and the description ``make train`` wrote beside it (``triggers.json``)."""
        path = Path(path)
        try:
            meta = json.loads(path.read_text())
            arrays = np.load(path.with_name(meta["head"]))
            head = cls(list(meta["labels"]), dict(meta["speakers"]), arrays["w1"], arrays["b1"], arrays["w2"], arrays["b2"],
                       {label: float(t) for label, t in meta["thresholds"].items()})
            if head.w2.shape[1] != len(head.labels) or head.w1.shape[1] != head.w2.shape[0]:
                raise ValueError("the head's shapes and labels disagree")
        except FileNotFoundError as exc:
            raise ModelError(f"trigger model {exc.filename or path} not found: run `make train` to build it") from None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ModelError(f"trigger model {path} is unreadable ({exc!r}): run `make train`") from None
        return head, meta


class TurnReader:
    """Finds the labels a turn's sentences carry, each with its likeliest sentence and nearest example."""

    def __init__(self, head: TurnHead, examples: dict[str, list[str]], example_vectors: dict[str, np.ndarray]) -> None:
        self.head = head
        self.examples = examples
        self.example_vectors = example_vectors  # label -> (examples, dim), by the tuned encoder

    def match(self, speaker: str, sentences: list[str], vectors: np.ndarray, context: np.ndarray | None) -> list[ExemplarMatch]:
        if not sentences:
            return []
        if vectors.shape[1] != self.head.dimensions:
            raise ModelError(f"the trigger model was trained on {self.head.dimensions}-d embeddings, the encoder gives "
                             f"{vectors.shape[1]}: run `make train` with this encoder")
        probabilities = self.head.probabilities(vectors, context)
        found = []
        for c, label in enumerate(self.head.labels):
            if self.head.speakers.get(label) != speaker:
                continue
            fires = probabilities[:, c] >= self.head.thresholds.get(label, 2.0)
            if not fires.any():
                continue
            i = int(np.argmax(np.where(fires, probabilities[:, c], -1.0)))
            exemplar, similarity = "", 0.0
            if len(self.example_vectors.get(label, ())):
                similarities = self.example_vectors[label] @ vectors[i]
                j = int(similarities.argmax())
                exemplar, similarity = self.examples[label][j], float(similarities[j])
            found.append(ExemplarMatch(label, float(probabilities[i, c]), sentences[i], exemplar, similarity))
        return found
