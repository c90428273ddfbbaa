"""The candidate turn model's reading (not adopted, docs/decisions/0003-trigger-ensemble-stays.md):
one tuned encoder reads each sentence of a turn beside the other party's turn before it, and one
small network says which labels it carries.

The head's input for a sentence ``u`` in the context ``c`` (the other party's previous turn, the mean
of its sentences' embeddings; zeros when there is none) is ``[u, c, u * c]``; a hidden layer, then one
sigmoid per label, each with its threshold (``turn_model_training.py``). Kept for
``benchmarks/writers_bench.py`` (leave-one-writer-out and the held-out sets), which trains and scores
it in memory; nothing here is loaded by the coach.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


HIDDEN = 256
SCALE = 20.0  # unit-length embeddings times this (their product times this and the root of their size) are the head's input


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
