"""``coach train`` (``make train``): build the trigger model and the sentiment head in ``models/heads/``
from the project's own data.

- ``triggers.json`` (with ``triggers-adapter.npz`` and ``triggers-head.npz``): one encoder, its top
  blocks tuned through a low-rank adapter together with the turn head (``coach/tuning.py``,
  ``coach/detect/turns.py``), on every turn of the whole calls in ``TextSettings.training_lines`` (each
  read beside the other party's previous turn), the exemplars of ``models/exemplars.yaml`` (near-misses
  as ordinary) and the ordinary call lines of ``models/data/*.csv`` that no phrase rule flags. Each
  label's threshold gives the most recall at a precision of at least 0.9 on the calibration lines
  (``TextSettings.calibration``: single lines by other writers), less any line learnt from.
- ``sentiment.json``: a softmax head (negative / neutral / positive) over the tuned encoder's segment
  embeddings (the mean of its sentences', as the analyzer reads them: one pass serves both models),
  trained on ``models/data/*.csv`` (angry and frustrated lines are negative). Its L2 strength is picked
  by 5-fold cross-validation, whose AUC (negative against the rest) is recorded.

Deterministic: fixed seeds, batch order and thread count, full-batch gradient descent from zeros for the
sentiment head, figures rounded when written.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from coach.detect.exemplars import read_lines
from coach.detect.sentiment import HEAD_CLASSES, softmax

MOOD_CLASS = {"angry": "negative", "frustrated": "negative", "neutral": "neutral", "positive": "positive"}
L2_GRID = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2)
FOLDS = 5


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


def segment_vectors(encoder, texts: list[str]) -> np.ndarray:
    """Each text's embedding as the analyzer reads a segment: the unit-length mean of its sentences'."""
    from coach.detect.exemplars import split_sentences
    from coach.detect.turns import turn_vector

    pieces = [split_sentences(t) or [t.strip()] for t in texts]
    flat = [s for p in pieces for s in p]
    vectors = np.concatenate([encoder.embed(flat[i : i + 64]) for i in range(0, len(flat), 64)])
    out, k = [], 0
    for p in pieces:
        out.append(turn_vector(vectors[k : k + len(p)]))
        k += len(p)
    return np.stack(out).astype(np.float64)


def read_calibration(paths: list[Path]) -> list[dict]:
    """Labelled single call lines (JSON lines ``{"speaker", "text", "labels"}``) to set thresholds on."""
    lines = []
    for path in paths:
        for number, raw in enumerate(Path(path).read_text().splitlines(), 1):
            if raw.strip():
                try:
                    line = json.loads(raw)
                    lines.append({"speaker": str(line["speaker"]), "text": str(line["text"]), "labels": list(line["labels"])})
                except (ValueError, KeyError, TypeError):
                    raise ValueError(f"{path}:{number}: expected a JSON object with speaker, text and labels") from None
    return lines


def taught_turns(settings, log: Callable[[str], None]):
    """What the trigger model learns from: single turns (the exemplars, near-misses as ordinary, and the
    ordinary call lines no phrase rule flags), whole calls by file, the calibration lines less any it learns
    from; with the labels and each label's party."""
    from coach.detect.exemplars import load_background, load_exemplars
    from coach.detect.triggers import rule_flags
    from coach.tuning import call_turns, single_turns

    sets = load_exemplars(settings.exemplars)
    labels = sorted(sets)
    speakers = {label: sets[label].speaker for label in labels}
    base = []
    for label in labels:
        base += single_turns([{"speaker": sets[label].speaker, "text": e, "labels": [label]} for e in sets[label].examples], "exemplars")
        base += single_turns([{"speaker": sets[label].speaker, "text": e, "labels": []} for e in sets[label].not_], "exemplars")
    background = load_background(settings.utterances, rule_flags)
    base += single_turns([{"speaker": speaker, "text": text, "labels": []} for speaker in sorted(background) for text in background[speaker]], "ordinary")
    calls = {}
    for path in settings.training_lines:
        lines = [line for line in read_calibration([path]) if set(line["labels"]) <= set(labels)]
        calls[Path(path).stem] = call_turns([{**line, "call": line.get("call", "")} for line in lines], Path(path).stem)
    seen = {(t.speaker, t.sentences) for t in base} | {(t.speaker, t.sentences) for turns in calls.values() for t in turns}
    calibration = [t for t in single_turns(read_calibration(settings.calibration), "calibration") if (t.speaker, t.sentences) not in seen]
    log(f"trigger model: {sum(len(s.examples) + len(s.not_) for s in sets.values())} exemplars and near-misses, "
        f"{sum(map(len, background.values()))} ordinary lines, {sum(map(len, calls.values()))} turns of whole calls in "
        f"{len(calls)} files; {len(calibration)} calibration lines")
    return base, calls, calibration, labels, speakers


def _digest(*paths: Path) -> str:
    h = hashlib.sha256()
    for p in paths:
        h.update(Path(p).read_bytes())
    return h.hexdigest()[:16]


def train(settings, models_dir: Path, log: Callable[[str], None] = print) -> list[Path]:
    """Train the trigger model and the sentiment head from the files ``settings`` (TextSettings) names,
    into the files it names."""
    from coach.detect.encoder import TextEncoder
    from coach.models import resolve_text_model
    from coach.tuning import CROSS_FOLDS, TUNE_BLOCKS, TUNE_THREADS, LayerCache, calibrate, cross_fitted, tune, write_model

    model_spec = resolve_text_model(settings.encoder, models_dir)
    base, calls, calibration, labels, speakers = taught_turns(settings, log)
    cache = LayerCache(TextEncoder(model_spec, TUNE_THREADS), TUNE_BLOCKS, log)
    log(f"thresholds: each call file's turns read by a model trained without it ({CROSS_FOLDS} folds), with the calibration lines")
    turns, probabilities = cross_fitted(cache, base, calls, calibration, labels, speakers, CROSS_FOLDS, log)
    log(f"the trigger model ({settings.encoder}, top {TUNE_BLOCKS} blocks tuned) on all of it")
    tuned = tune(cache, base + [t for mine in calls.values() for t in mine], labels, speakers, log=log)
    quality = calibrate(tuned, turns, probabilities, log)
    trained_on = _digest(settings.exemplars, *settings.utterances, *settings.training_lines, *settings.calibration)
    written = write_model(tuned, Path(settings.triggers), settings.encoder, trained_on, quality)
    adapter = next((p for p in written if p.name.endswith("-adapter.npz")), None)

    encoder = TextEncoder(model_spec, TUNE_THREADS)  # read as the analyzer will: the adapter merged in
    if adapter is not None:
        encoder.tune(adapter)
    rows = read_utterances(settings.utterances)
    log(f"sentiment: {len(rows)} utterances from {', '.join(str(p) for p in settings.utterances)}, on the tuned encoder")
    head = train_sentiment(rows, segment_vectors(encoder, [r["text"] for r in rows]), log)
    head = {"encoder": settings.encoder, "adapter": adapter.name if adapter else "", "trained_on": _digest(*settings.utterances), **head}
    log(f"sentiment head: l2 {head['l2']:g}, cross-validated AUC {head['cv_auc']:.3f}")
    path = Path(settings.head)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(head, indent=1, sort_keys=True) + "\n")
    written.append(path)
    for p in written:
        log(f"wrote {p}")
    return written
