"""What the trigger model learns from and reads: the exemplars of each label, ordinary call lines,
the project's labelled call lines, and how a segment is cut into sentences.

``models/exemplars.yaml`` has, per label, examples of how people say it and near-misses that must not
fire ("your manager helped me last week"); ``make train`` learns from them beside whole calls
(``coach/tuning.py``), and the label's nearest example is the evidence QA sees
(``coach/detect/turns.py``).
"""

from __future__ import annotations

import csv
import hashlib
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from coach.errors import ModelError

MODELS = Path(__file__).resolve().parent.parent.parent / "models"
DEFAULT_EXEMPLARS = MODELS / "exemplars.yaml"
DEFAULT_TRIGGERS = MODELS / "heads" / "triggers.json"
DEFAULT_UTTERANCES = (MODELS / "data" / "sentiment.csv", MODELS / "data" / "ordinary.csv")
# Single call lines by writers who saw only the signal definitions (benchmarks/lines/tune*.jsonl):
# the trigger thresholds are set on them; benchmarks/lines/heldout.jsonl is never trained or set on.
DEFAULT_CALIBRATION = tuple(MODELS.parent / "benchmarks" / "lines" / f"{name}.jsonl" for name in ("tune", "tune2", "tune3", "ordinary"))
# Whole scripted calls by writers who saw only the signal definitions (one turn a line, in call order):
# models/data/calls/*.jsonl (six writers) and models/data/writers/<writer>.jsonl (one writer each, a
# register each). The trigger model learns from every turn (a call is mostly turns that carry no trigger).
# benchmarks/lines/heldout-calls and heldout-writers hold calls that are never trained or set on.
DEFAULT_TRAINING_LINES = tuple(sorted((MODELS / "data" / "calls").glob("*.jsonl"))) + tuple(sorted((MODELS / "data" / "writers").glob("*.jsonl")))
BACKGROUND_MOODS = ("neutral", "positive")


class ExemplarSet(BaseModel):
    model_config = ConfigDict(extra="forbid")

    speaker: str = Field(pattern="^(customer|agent)$")
    examples: list[str] = Field(min_length=1)
    not_: list[str] = Field(default_factory=list, alias="not")


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
