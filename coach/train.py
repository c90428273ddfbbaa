"""``coach train`` (``make train``): build the small heads in ``models/heads/`` from the project's own data.

- ``sentiment.json``: a softmax head (negative / neutral / positive) over the tuned encoder's
  sentence embeddings (below: one encoder pass reads a segment for both heads), trained on ``models/data/*.csv`` (angry and frustrated lines are negative). Its L2
  strength is picked by 5-fold cross-validation, whose AUC (negative against the rest) is recorded.
- ``triggers-adapter.npz`` (``-1`` ... ``-5``) and ``triggers.json``: an ensemble of six members, each a
  low-rank adapter of the encoder and a softmax over ``none`` and every trigger label, tuned together on
  ``models/exemplars.yaml`` (examples; near-misses and ordinary call lines as ``none``) from its own
  seed; per speaker the rows of its labels, and each label's threshold and nearest-example floor, on the
  members' mean probability and mean similarity, giving the most recall at a precision of at least 0.9
  on the calibration lines (``TextSettings.calibration``) and the ordinary lines kept out of training.
  One member's false alarm on a line it happened to learn badly is outvoted by the others; with six
  members instead of three, the result depends less on the seeds (two draws of three differed by 0.10
  in precision on the dev calls).

Deterministic: fixed seeds, folds and thread count, full-batch gradient descent from zeros for the
sentiment head, figures rounded when written.
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
THRESHOLD_GRID = np.round(np.arange(0.20, 0.976, 0.025), 3)
FLOOR_GRID = np.round(np.arange(0.0, 0.801, 0.05), 2)
TRIGGER_PRECISION = 0.9
# Tuning the encoder for the triggers (coach/detect/adapter.py): AdamW on the adapter and the head.
TUNE_EPOCHS = 4
TUNE_BATCH = 16
TUNE_RATE = 1e-3
TUNE_SCALE = 20.0  # unit-length embeddings times this are the head's input
TUNE_THREADS = 2
TRIGGER_SEEDS = (0, 1, 2, 3, 4, 5)  # one member of the trigger ensemble per seed; the first is shared with sentiment
BACKGROUND_KEPT_OUT = 5  # one ordinary line in this many sets thresholds instead of training the adapter


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


def embed_all(encoder, texts: list[str]) -> np.ndarray:
    return np.concatenate([encoder.embed(texts[i : i + 64]) for i in range(0, len(texts), 64)]).astype(np.float64)


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


def taught_lines(lines: list[dict], labels: list[str], calibration: list[dict]) -> tuple[list[dict], list[dict]]:
    """The other writers' ``lines`` the trigger adapters learn from (those of one label, one of ``labels``,
    and with ``none`` among them the lines of no label, as ``none``; a line of two labels teaches neither),
    and the ``calibration`` lines left to set thresholds on: every one not learnt from, so no line both
    trains a head and judges it."""
    taught = [line for line in lines if (line["labels"] or ["none"])[0] in labels and len(line["labels"]) <= 1]
    seen = {(line["speaker"], line["text"]) for line in taught}
    return taught, [line for line in calibration if (line["speaker"], line["text"]) not in seen]


def best_thresholds(probability: np.ndarray, nearest: np.ndarray, owner: np.ndarray, truth: np.ndarray) -> tuple[float, float, float, float]:
    """The probability threshold and similarity floor with the most recall at a precision of at least
    ``TRIGGER_PRECISION`` on the calibration lines (ordinary lines far outnumber triggers in a real call,
    so a false alarm costs more here than in these files), ties to the stricter; with precision and recall.
    ``probability`` and ``nearest`` are per sentence, ``owner`` the line of each sentence, ``truth`` per
    line: a line fires when one of its sentences does, as in a call. A label that never gets there is
    switched off (threshold above 1): its phrase rules alone speak for it."""
    best = (1.01, 1.0, -1.0, 1.0, 0.0)
    for floor in FLOOR_GRID:
        for t in THRESHOLD_GRID:
            fired = np.zeros(len(truth), bool)
            fired[owner[(probability >= t) & (nearest >= floor)]] = True
            tp = int((fired & truth).sum())
            fp = int((fired & ~truth).sum())
            precision = tp / (tp + fp) if tp + fp else 1.0
            recall = tp / max(int(truth.sum()), 1)
            if tp and precision >= TRIGGER_PRECISION and recall >= best[2]:
                best = (float(t), float(floor), recall, precision, recall)
    return best[0], best[1], best[3], best[4]


def tune_encoder(encoder, texts: list[str], y: np.ndarray, classes: int, adapter: Path, log: Callable[[str], None],
                 seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Fine-tune a low-rank adapter of ``encoder`` and a linear head to tell the classes apart; writes the
    adapter and returns the head (weights, bias) over the adapted encoder's unit-length embeddings.
    ``seed`` fixes every random choice (starting points, batch order); 0 is the shipped adapter's."""
    import copy

    import torch

    from coach.detect import adapter as lowrank

    torch.manual_seed(seed)
    threads = torch.get_num_threads()
    torch.set_num_threads(TUNE_THREADS)  # the sums' order, hence the result, depends on it
    try:
        model = copy.deepcopy(encoder.model).train()
        updates = lowrank.attach(model, seed=seed)
        head = torch.nn.Linear(encoder.dimensions, classes)
        with torch.no_grad():
            head.weight.copy_(torch.randn(head.weight.shape, generator=torch.Generator().manual_seed(seed)) * 0.01)
            head.bias.zero_()
        trainable = [p for u in updates.values() for p in (u.a, u.b)] + list(head.parameters())
        optimizer = torch.optim.AdamW(trainable, lr=TUNE_RATE, weight_decay=0.01)
        order = torch.Generator().manual_seed(seed)
        target = torch.as_tensor(y)
        for epoch in range(TUNE_EPOCHS):
            total = 0.0
            for batch in torch.randperm(len(texts), generator=order).split(TUNE_BATCH):
                vectors = encoder.pool(model, [texts[i] for i in batch])
                loss = torch.nn.functional.cross_entropy(head(vectors * TUNE_SCALE), target[batch])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                total += loss.item() * len(batch)
            log(f"  epoch {epoch + 1}/{TUNE_EPOCHS}: loss {total / len(texts):.3f}")
        lowrank.save(updates, adapter)
        return head.weight.detach().numpy().astype(np.float64) * TUNE_SCALE, head.bias.detach().numpy().astype(np.float64)
    finally:
        torch.set_num_threads(threads)


def trigger_training_lines(sets: dict[str, ExemplarSet], background: dict[str, list[str]],
                           lines: list[dict] = ()) -> tuple[list[str], np.ndarray, list[dict]]:
    """The lines the trigger adapter is tuned on, with their classes (0 ``none``, then the labels of
    ``sets`` in order: examples as their label, near-misses and ordinary lines as ``none``), and the
    ordinary lines kept out of training to set thresholds on (every fifth; a call is mostly these).
    ``lines``: other writers' labelled call lines, each as its one label of its speaker's, or ``none``
    when it has none (a line with two such labels teaches no single class and is left out)."""
    texts, y, kept_out = [], [], []
    for c, name in enumerate(sets, start=1):
        texts += sets[name].examples + sets[name].not_
        y += [c] * len(sets[name].examples) + [0] * len(sets[name].not_)
    classes = {name: c for c, name in enumerate(sets, start=1)}
    for line in lines:
        mine = [label for label in line["labels"] if label in sets and sets[label].speaker == line["speaker"]]
        if len(mine) <= 1:
            texts.append(line["text"])
            y.append(classes[mine[0]] if mine else 0)
    for speaker in sorted(background):
        trained = [line for i, line in enumerate(background[speaker]) if i % BACKGROUND_KEPT_OUT]
        texts += trained
        y += [0] * len(trained)
        kept_out += [{"speaker": speaker, "text": line, "labels": []} for line in background[speaker][::BACKGROUND_KEPT_OUT]]
    return texts, np.array(y), kept_out


def train_triggers(sets: dict[str, ExemplarSet], background: dict[str, list[str]], calibration: list[dict], encoder,
                   triggers: Path, log: Callable[[str], None], lines: list[dict] = ()) -> tuple[dict, object, list[Path]]:
    """The trigger ensemble: per seed of ``TRIGGER_SEEDS`` an adapter (written beside ``triggers``) and a
    softmax over ``none`` and every label, fitted on the exemplars and other writers' labelled ``lines``
    (near-misses and ordinary lines as ``none``); per speaker, the rows of its labels; per label, the threshold and nearest-example floor on
    the members' means with the most recall at precision >= 0.9 on the calibration lines and on the
    ordinary lines kept out of training (a call is mostly ordinary lines). Returns them with the first
    member's tuned encoder, which the sentiment head is then trained on (one encoder pass reads a
    segment for both), and the adapters written."""
    from coach.detect.exemplars import adapter_path, mean_probabilities, mean_similarity, split_sentences

    labels = list(sets)
    texts, y, kept_out = trigger_training_lines(sets, background, lines)
    calibration = list(calibration) + kept_out
    adapters, tuned, heads = [], [], []
    for member, seed in enumerate(TRIGGER_SEEDS):
        adapters.append(adapter_path(triggers, member))
        log(f"  tuning the encoder, member {member + 1}/{len(TRIGGER_SEEDS)} (seed {seed}): {len(texts)} lines, {len(labels)} labels, {TUNE_EPOCHS} epochs")
        heads.append(tune_encoder(encoder, texts, y, len(labels) + 1, adapters[-1], log, seed=seed))
        tuned.append(encoder.adapted(adapters[-1]))
    weights, bias = np.stack([w for w, _ in heads]), np.stack([b for _, b in heads])  # (members, classes, dim), (members, classes)

    def embed_members(lines: list[str]) -> np.ndarray:  # (members, lines, dim)
        return np.stack([embed_all(t, lines) if lines else np.zeros((0, encoder.dimensions)) for t in tuned])

    speakers, stored = {}, [{"adapter": adapter.name, "seed": seed, "speakers": {}} for adapter, seed in zip(adapters, TRIGGER_SEEDS)]
    for speaker in sorted({s.speaker for s in sets.values()}):
        mine = [name for name in labels if sets[name].speaker == speaker]
        rows = [0] + [labels.index(name) + 1 for name in mine]
        lines = [line for line in calibration if line["speaker"] == speaker]
        sentences, owner = [], []
        for i, line in enumerate(lines):
            for sentence in split_sentences(line["text"]) or [line["text"]]:
                sentences.append(sentence)
                owner.append(i)
        x = embed_members(sentences)
        probability = mean_probabilities(x, weights[:, rows], bias[:, rows])
        thresholds, floors, quality = {}, {}, {}
        for c, name in enumerate(mine, start=1):
            similarity = mean_similarity(x, embed_members(sets[name].examples))
            nearest = similarity.max(axis=1) if len(similarity) else np.zeros(0)
            truth = np.array([name in line["labels"] for line in lines], bool)
            t, floor, precision, recall = best_thresholds(probability[:, c], nearest, np.array(owner, int), truth)
            thresholds[name], floors[name] = t, floor
            quality[name] = {"calibration_precision": round(precision, 3), "calibration_recall": round(recall, 3), "calibration_lines": int(truth.sum())}
            log(f"  {name:24s} p >= {t:.3f}, nearest example >= {floor:.2f}: on the calibration lines precision {precision:.2f} recall {recall:.2f}")
        log(f"  ({speaker}: {len(lines)} calibration lines)")
        speakers[speaker] = {"classes": ["none", *mine], "thresholds": thresholds, "floors": floors, "quality": quality}
        for entry, w, b in zip(stored, weights, bias):
            entry["speakers"][speaker] = {"weights": np.round(w[rows], 6).tolist(), "bias": np.round(b[rows], 6).tolist()}
    return {"adapter": adapters[0].name, "members": stored, "speakers": speakers}, tuned[0], adapters


def _digest(*paths: Path) -> str:
    h = hashlib.sha256()
    for p in paths:
        h.update(Path(p).read_bytes())
    return h.hexdigest()[:16]


def train(settings, models_dir: Path, log: Callable[[str], None] = print) -> list[Path]:
    """Train both heads from the files ``settings`` (TextSettings) names, into the files it names."""
    from coach.detect.encoder import TextEncoder
    from coach.detect.exemplars import load_background, load_exemplars
    from coach.detect.triggers import rule_flags
    from coach.models import resolve_text_model

    encoder = TextEncoder(resolve_text_model(settings.encoder, models_dir), settings.threads)
    sets = load_exemplars(settings.exemplars)
    background = load_background(settings.utterances, rule_flags)
    lines, calibration = taught_lines(read_calibration(settings.training_lines), settings.training_labels,
                                      read_calibration(settings.calibration))
    log(f"exemplars: {sum(len(s.examples) for s in sets.values())} examples, "
        f"{sum(len(s.not_) for s in sets.values())} near-misses, {sum(map(len, background.values()))} background lines, "
        f"{len(lines)} lines of {', '.join(settings.training_labels) or 'no label'} from {', '.join(str(p) for p in settings.training_lines) or 'no file'}; "
        f"{len(calibration)} calibration lines (less those) from {', '.join(str(p) for p in settings.calibration)}")
    triggers, tuned, adapters = train_triggers(sets, background, calibration, encoder, Path(settings.triggers), log, lines)
    triggers = {"trained_on": _digest(settings.exemplars, *settings.utterances, *settings.training_lines, *settings.calibration),
                "taught_labels": sorted(settings.training_labels), **triggers}

    rows = read_utterances(settings.utterances)
    log(f"sentiment: {len(rows)} utterances from {', '.join(str(p) for p in settings.utterances)}, on the tuned encoder")
    head = train_sentiment(rows, embed_all(tuned, [r["text"] for r in rows]), log)
    head = {"encoder": Path(encoder.name).name if Path(encoder.name).exists() else encoder.name, "adapter": adapters[0].name,
            "trained_on": _digest(*settings.utterances), **head}
    log(f"sentiment head: l2 {head['l2']:g}, cross-validated AUC {head['cv_auc']:.3f}")

    written = list(adapters)
    for adapter in adapters:
        log(f"wrote {adapter}")
    for path, data in ((Path(settings.head), head), (Path(settings.triggers), triggers)):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
        written.append(path)
        log(f"wrote {path}")
    return written
