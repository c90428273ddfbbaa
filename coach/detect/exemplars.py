"""Trigger detection by meaning: sentences whose embedding lies among the project's exemplars of a label.

Phrase rules catch the words a contact centre hears every day; people also say the same thing in
ways no rule lists ("is there anyone above you who can actually do something?"). Each label of
``models/exemplars.yaml`` has examples of how people say it and near-misses that must not fire
("your manager helped me last week"). ``make train`` tunes the encoder through a small low-rank
adapter (``coach/detect/adapter.py``) together with a softmax over ``none`` and every label, six
times from six seeds (an ensemble whose mean decides; one member's slip is outvoted), on the
examples, against the near-misses, the other labels and ordinary lines of calls (the neutral and
positive lines of ``models/data/*.csv``, less any that a phrase rule would flag). Each label's
threshold, with a floor on the similarity of the label's nearest example (so a line the head has
never seen the like of does not fire), is the one with the most recall at a precision of at least
0.9 on calibration lines that other writers wrote (``benchmarks/lines/tune*.jsonl`` and
``ordinary.jsonl``) and on ordinary lines kept out of training; never on test calls. The nearest
example is reported as the evidence.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from coach.errors import ModelError

from coach.defaults import EXEMPLARS as DEFAULT_EXEMPLARS  # noqa: E402 (the defaults are data: coach/defaults.py)
from coach.defaults import TRIGGER_HEADS as DEFAULT_TRIGGERS  # noqa: E402

BACKGROUND_MOODS = ("neutral", "positive")


class ExemplarSet(BaseModel):
    model_config = ConfigDict(extra="forbid")

    speaker: str = Field(pattern="^(customer|agent)$")
    examples: list[str] = Field(min_length=1)
    not_: list[str] = Field(default_factory=list, alias="not")


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


def load_exemplars(path: Path = DEFAULT_EXEMPLARS) -> dict[str, ExemplarSet]:
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text())
    except OSError as exc:
        raise ModelError(f"cannot read exemplars {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ModelError(f"exemplars {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise ModelError(f"exemplars {path}: expected a mapping of label to examples")
    try:
        return {str(label): ExemplarSet.model_validate(entry) for label, entry in data.items()}
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ModelError(f"exemplars {path}: {'.'.join(map(str, first['loc']))}: {first['msg']}") from None


def read_lines(paths: list[Path]) -> list[tuple[Path, list[dict[str, str]]]]:
    """The labelled call lines of each CSV (``speaker,mood,text``)."""
    out = []
    for path in paths:
        with open(path, newline="") as f:
            out.append((Path(path), list(csv.DictReader(f))))
    return out


def load_background(paths: list[Path], flagged: Callable[[str, str], bool]) -> dict[str, list[str]]:
    """Ordinary lines of calls by speaker (neutral and positive), less any a phrase rule flags."""
    lines: dict[str, list[str]] = {"customer": [], "agent": []}
    for _, rows in read_lines(paths):
        for row in rows:
            if row["mood"] in BACKGROUND_MOODS and row["speaker"] in lines and not flagged(row["speaker"], row["text"]):
                lines[row["speaker"]].append(row["text"])
    return lines


# A title's full stop ends no sentence ("The manager at my branch, Mr. Patel, sorted it" is one line).
_TITLES = ("Mr", "Mrs", "Ms", "Mx", "Dr", "Prof", "Rev", "St", "Jr", "Sr")
_SENTENCE_END = re.compile("".join(rf"(?<!\b{title}\.)" for title in _TITLES) + r"(?<=[.?!])\s+")


def split_sentences(text: str) -> list[str]:
    """Sentences of a segment; a piece of one or two words joins its neighbour (``"No. Not at all."``);
    a title's full stop ("Mr.", "Dr.") ends none."""
    pieces: list[str] = []
    for piece in _SENTENCE_END.split(text.strip()):
        if pieces and (len(piece.split()) <= 2 or len(pieces[-1].split()) <= 2):
            pieces[-1] = f"{pieces[-1]} {piece}"
        elif piece:
            pieces.append(piece)
    return pieces


@dataclass
class SpeakerHead:
    """Softmaxes over ``none`` and one speaker's labels, one per member of the ensemble (each member
    reads the encoder through its own adapter); a label fires on the members' mean probability and
    mean similarity to its nearest example."""

    classes: list[str]  # "none" first
    weights: np.ndarray  # (members, classes, dimensions)
    bias: np.ndarray  # (members, classes)
    thresholds: dict[str, float]  # the label's mean probability at least this
    floors: dict[str, float]  # and its nearest example at least this similar, on average

    @property
    def members(self) -> int:
        return len(self.weights)


def mean_probabilities(embeddings: np.ndarray, weights: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """The ensemble's probabilities, ``(sentences, classes)``: each member's softmax over its own
    encoder's embeddings, averaged. ``embeddings`` (members, sentences, dimensions), ``weights``
    (members, classes, dimensions), ``bias`` (members, classes). Training calibrates on this, matching reads it."""
    from coach.detect.sentiment import softmax

    return softmax(np.einsum("msd,mcd->msc", embeddings, weights) + bias[:, None, :]).mean(axis=0)


def mean_similarity(embeddings: np.ndarray, examples: np.ndarray) -> np.ndarray:
    """Each member's cosine similarity of sentences to examples, averaged: ``(sentences, examples)``."""
    return np.einsum("msd,med->se", embeddings, examples) / len(embeddings)


class ExemplarIndex:
    """``embeds``: one embedding function per member of the ensemble, in the heads' order."""

    def __init__(self, sets: dict[str, ExemplarSet], heads: dict[str, SpeakerHead], embeds: list[Callable[[list[str]], np.ndarray]]) -> None:
        self.sets = sets
        self.heads = heads
        self.members = len(embeds)
        wrong = [speaker for speaker, head in heads.items() if head.members != self.members]
        if wrong:
            raise ModelError(f"the trigger heads of {', '.join(wrong)} have {heads[wrong[0]].members} members, the encoders {self.members}: run `make train`")
        self._examples = {label: np.stack([embed(s.examples) for embed in embeds]) for label, s in sets.items()}  # (members, examples, dim)

    def match(self, speaker: str, sentences: list[str], embeddings: np.ndarray) -> list[ExemplarMatch]:
        """The labels these sentences of ``speaker`` fire, each with its likeliest sentence and nearest
        example. ``embeddings``: (members, sentences, dimensions), each member's encoder's."""
        head = self.heads.get(speaker)
        if head is None or not sentences:
            return []
        probabilities = mean_probabilities(embeddings, head.weights, head.bias)  # (sentences, classes)
        found = []
        for c, label in enumerate(head.classes):
            if label not in head.thresholds or label not in self._examples:
                continue
            likely = probabilities[:, c] >= head.thresholds[label]
            if not likely.any():
                continue
            nearest = mean_similarity(embeddings, self._examples[label])  # (sentences, examples)
            fires = likely & (nearest.max(axis=1) >= head.floors.get(label, 0.0))
            if not fires.any():
                continue
            i = int(np.argmax(np.where(fires, probabilities[:, c], -1.0)))
            j = int(nearest[i].argmax())
            found.append(ExemplarMatch(label, float(probabilities[i, c]), sentences[i], self.sets[label].examples[j], float(nearest[i, j])))
        return found


def adapter_path(triggers: Path, member: int = 0) -> Path:
    """Where a member's encoder adapter sits beside the heads: ``triggers.json`` -> ``triggers-adapter.npz``
    (member 0, which the sentiment head shares), ``triggers-adapter-1.npz``, ..."""
    suffix = f"-{member}" if member else ""
    return Path(triggers).with_name(f"{Path(triggers).stem}-adapter{suffix}.npz")


def load_heads(path: Path = DEFAULT_TRIGGERS) -> tuple[dict[str, SpeakerHead], list[Path | None]]:
    """The heads by speaker, and the adapter each member reads the encoder through (None: the plain encoder)."""
    try:
        data = json.loads(Path(path).read_text())
        members = data["members"]
        heads = {
            speaker: SpeakerHead(h["classes"],
                                 np.asarray([m["speakers"][speaker]["weights"] for m in members], np.float32),
                                 np.asarray([m["speakers"][speaker]["bias"] for m in members], np.float32),
                                 {label: float(t) for label, t in h["thresholds"].items()},
                                 {label: float(t) for label, t in h["floors"].items()})
            for speaker, h in data["speakers"].items()
        }
        if not members or any(head.weights.ndim != 3 or head.weights.shape[1] != len(head.classes) for head in heads.values()):
            raise ValueError("heads and classes disagree")
    except FileNotFoundError:
        raise ModelError(f"trigger heads {path} not found: run `make train` to build them") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelError(f"trigger heads {path} are unreadable ({exc!r}): run `make train`") from None
    return heads, [Path(path).with_name(m["adapter"]) if m.get("adapter") else None for m in members]


def cached_embed(embed: Callable[[list[str]], np.ndarray], model_name: str, cache_dir: Path) -> Callable[[list[str]], np.ndarray]:
    """Embed a fixed list of texts once per model and content; later starts read it from ``cache_dir``."""

    def embed_cached(texts: list[str]) -> np.ndarray:
        key = hashlib.sha256("\n".join([model_name, *texts]).encode()).hexdigest()[:24]
        path = cache_dir / f"embeddings-{key}.npy"
        try:
            return np.load(path)
        except (OSError, ValueError):
            pass
        vectors = np.concatenate([embed(texts[i : i + 64]) for i in range(0, len(texts), 64)])
        try:
            cache_dir.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".partial.npy")
            np.save(tmp, vectors)
            tmp.replace(path)
        except OSError:
            pass  # a read-only cache only costs time
        return vectors

    return embed_cached
