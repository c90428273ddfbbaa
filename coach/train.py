"""``coach train`` (``make train``): build the small heads in ``models/heads/`` from the project's own data.

- ``sentiment.json``: a softmax head (negative / neutral / positive) over sentence embeddings,
  trained on ``models/data/*.csv`` (angry and frustrated lines are negative). Its L2
  strength is picked by 5-fold cross-validation, whose AUC (negative against the rest) is recorded.
- ``triggers.json``: per speaker, a softmax over ``none`` and the speaker's trigger labels, fitted on
  the embeddings of ``models/exemplars.yaml`` (examples; near-misses and ordinary call lines as
  ``none``), with each label's threshold and nearest-example floor giving the most 5-fold cross-validated
  recall at a precision of at least 0.9.

Deterministic: fixed folds, full-batch gradient descent from zeros, figures rounded when written.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from coach.detect.exemplars import ExemplarSet, read_lines
from coach.detect.sentiment import HEAD_CLASSES, softmax

MOOD_CLASS = {"angry": "negative", "frustrated": "negative", "neutral": "neutral", "positive": "positive"}
L2_GRID = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2)
FOLDS = 5
THRESHOLD_GRID = np.round(np.arange(0.20, 0.951, 0.05), 2)
FLOOR_GRID = np.round(np.arange(0.0, 0.801, 0.05), 2)
TRIGGER_L2 = 1e-3
TRIGGER_PRECISION = 0.9


def read_utterances(paths: list[Path]) -> list[dict[str, str]]:
    rows = []
    for path, mine in read_lines(paths):
        bad = [i + 2 for i, r in enumerate(mine) if r.get("mood") not in MOOD_CLASS or r.get("speaker") not in ("customer", "agent") or not (r.get("text") or "").strip()]
        if bad:
            raise ValueError(f"{path}: lines {bad[:5]} need speaker customer|agent, mood {'|'.join(MOOD_CLASS)} and text")
        rows += mine
    return rows


def fit_softmax(x: np.ndarray, y: np.ndarray, classes: int, l2: float, steps: int = 1500, rate: float = 2.0) -> tuple[np.ndarray, np.ndarray]:
    """Class-balanced softmax regression by full-batch gradient descent (deterministic)."""
    x = x.astype(np.float64)
    w = np.zeros((classes, x.shape[1]))
    b = np.zeros(classes)
    counts = np.bincount(y, minlength=classes).astype(np.float64)
    sample_weight = (len(y) / (classes * np.maximum(counts, 1)))[y]
    onehot = np.eye(classes)[y]
    norm = sample_weight.sum()
    for _ in range(steps):
        p = softmax(x @ w.T + b)
        g = (p - onehot) * sample_weight[:, None] / norm
        w -= rate * (g.T @ x + l2 * w)
        b -= rate * g.sum(axis=0)
    return w, b


def auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """ROC AUC: the chance a positive scores above a negative (ties count half)."""
    pos, neg = scores[positive], scores[~positive]
    if not len(pos) or not len(neg):
        return float("nan")
    order = np.argsort(np.concatenate([pos, neg]), kind="mergesort")
    ranks = np.empty(len(order))
    values = np.concatenate([pos, neg])[order]
    i = 0
    while i < len(values):  # average ranks over ties
        j = i
        while j + 1 < len(values) and values[j + 1] == values[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def train_sentiment(rows: list[dict[str, str]], vectors: np.ndarray, log: Callable[[str], None]) -> dict:
    y = np.array([HEAD_CLASSES.index(MOOD_CLASS[r["mood"]]) for r in rows])
    negative = y == HEAD_CLASSES.index("negative")
    folds = np.random.default_rng(0).permutation(len(y)) % FOLDS
    best = None
    for l2 in L2_GRID:
        scores = np.zeros(len(y))
        for k in range(FOLDS):
            w, b = fit_softmax(vectors[folds != k], y[folds != k], len(HEAD_CLASSES), l2)
            p = softmax(vectors[folds == k] @ w.T + b)
            scores[folds == k] = p[:, 2] - p[:, 0]
        fold_auc = auc(-scores, negative)
        log(f"  l2 {l2:g}: cross-validated AUC (negative vs rest) {fold_auc:.3f}")
        if best is None or fold_auc > best[1] + 1e-9:
            best = (l2, fold_auc)
    l2, cv_auc = best
    w, b = fit_softmax(vectors, y, len(HEAD_CLASSES), l2)
    return {"classes": list(HEAD_CLASSES), "l2": l2, "cv_auc": round(cv_auc, 4), "examples": len(y),
            "weights": np.round(w, 6).tolist(), "bias": np.round(b, 6).tolist()}


def best_thresholds(probability: np.ndarray, nearest: np.ndarray, truth: np.ndarray) -> tuple[float, float, float, float]:
    """The probability threshold and similarity floor with the most recall at a cross-validated precision of
    at least ``TRIGGER_PRECISION`` (ordinary lines far outnumber triggers in a real call, so a false alarm
    costs more here than in these files), ties to the stricter; with precision and recall. A label that
    never gets there is switched off (threshold above 1): its phrase rules alone speak for it."""
    best = (1.01, 1.0, -1.0, 1.0, 0.0)
    for floor in FLOOR_GRID:
        for t in THRESHOLD_GRID:
            fired = (probability >= t) & (nearest >= floor)
            tp = int((fired & truth).sum())
            fp = int((fired & ~truth).sum())
            precision = tp / (tp + fp) if tp + fp else 1.0
            recall = tp / max(int(truth.sum()), 1)
            if tp and precision >= TRIGGER_PRECISION and recall >= best[2]:
                best = (float(t), float(floor), recall, precision, recall)
    return best[0], best[1], best[3], best[4]


def train_triggers(
    sets: dict[str, ExemplarSet], background: dict[str, list[str]], embed: Callable[[list[str]], np.ndarray], log: Callable[[str], None]
) -> dict:
    """Per speaker, a softmax over ``none`` and the speaker's labels; thresholds by cross-validated F1."""
    speakers = {}
    for speaker in sorted({s.speaker for s in sets.values()}):
        labels = [name for name, s in sets.items() if s.speaker == speaker]
        texts, y = [], []
        for c, name in enumerate(labels, start=1):
            texts += sets[name].examples + sets[name].not_
            y += [c] * len(sets[name].examples) + [0] * len(sets[name].not_)
        texts += background.get(speaker, [])
        y += [0] * len(background.get(speaker, []))
        x, y = embed(texts).astype(np.float64), np.array(y)
        folds = np.random.default_rng(0).permutation(len(y)) % FOLDS
        held_out = np.zeros((len(y), len(labels) + 1))
        nearest = np.zeros((len(y), len(labels) + 1))  # similarity to the nearest example of each label, in other folds
        similarity = x @ x.T
        for k in range(FOLDS):
            w, b = fit_softmax(x[folds != k], y[folds != k], len(labels) + 1, TRIGGER_L2)
            held_out[folds == k] = softmax(x[folds == k] @ w.T + b)
            for c in range(1, len(labels) + 1):
                examples = (y == c) & (folds != k)
                nearest[folds == k, c] = similarity[np.ix_(folds == k, examples)].max(axis=1)
        w, b = fit_softmax(x, y, len(labels) + 1, TRIGGER_L2)
        thresholds, floors, quality = {}, {}, {}
        for c, name in enumerate(labels, start=1):
            t, floor, precision, recall = best_thresholds(held_out[:, c], nearest[:, c], y == c)
            thresholds[name], floors[name] = t, floor
            quality[name] = {"cv_precision": round(precision, 3), "cv_recall": round(recall, 3)}
            log(f"  {name:24s} p >= {t:.2f}, nearest example >= {floor:.2f}: cross-validated precision {precision:.2f} recall {recall:.2f}")
        log(f"  ({speaker}: {len(y)} lines, {int((y == 0).sum())} of them near-misses and background)")
        speakers[speaker] = {"classes": ["none", *labels], "weights": np.round(w, 6).tolist(), "bias": np.round(b, 6).tolist(),
                             "thresholds": thresholds, "floors": floors, "quality": quality}
    return {"l2": TRIGGER_L2, "speakers": speakers}


def _digest(*paths: Path) -> str:
    h = hashlib.sha256()
    for p in paths:
        h.update(Path(p).read_bytes())
    return h.hexdigest()[:16]


def train(settings, log: Callable[[str], None] = print) -> list[Path]:
    """Train both heads from the files ``settings`` (TextSettings) names, into the files it names."""
    from coach.detect.encoder import TextEncoder
    from coach.detect.exemplars import load_background, load_exemplars
    from coach.detect.triggers import rule_flags
    from coach.models import resolve_text_model

    encoder = TextEncoder(resolve_text_model(settings.encoder), settings.threads)
    cache: dict[str, np.ndarray] = {}

    def embed(texts: list[str]) -> np.ndarray:
        todo = [t for t in dict.fromkeys(texts) if t not in cache]
        for i in range(0, len(todo), 64):
            for t, v in zip(todo[i : i + 64], encoder.embed(todo[i : i + 64])):
                cache[t] = v
        return np.stack([cache[t] for t in texts]) if texts else np.zeros((0, encoder.dimensions), np.float32)

    rows = read_utterances(settings.utterances)
    log(f"sentiment: {len(rows)} utterances from {', '.join(str(p) for p in settings.utterances)}")
    head = train_sentiment(rows, embed([r["text"] for r in rows]).astype(np.float64), log)
    head = {"encoder": Path(encoder.name).name if Path(encoder.name).exists() else encoder.name,
            "trained_on": _digest(*settings.utterances), **head}
    log(f"sentiment head: l2 {head['l2']:g}, cross-validated AUC {head['cv_auc']:.3f}")

    sets = load_exemplars(settings.exemplars)
    background = load_background(settings.utterances, rule_flags)
    log(f"exemplars: {sum(len(s.examples) for s in sets.values())} examples, "
        f"{sum(len(s.not_) for s in sets.values())} near-misses, {sum(map(len, background.values()))} background lines")
    triggers = {"trained_on": _digest(settings.exemplars, *settings.utterances), **train_triggers(sets, background, embed, log)}

    written = []
    for path, data in ((Path(settings.head), head), (Path(settings.triggers), triggers)):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
        written.append(path)
        log(f"wrote {path}")
    return written
