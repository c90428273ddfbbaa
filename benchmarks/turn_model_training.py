"""A candidate trigger model measured against the shipped six-member ensemble and not adopted
(docs/decisions/0003-trigger-ensemble-stays.md): its training, used by ``writers_bench.py``.

One encoder (its top blocks tuned through a low-rank adapter, or frozen) and one small head read each
sentence of a turn beside the other party's turn before it in its call. The training examples are
*turns*: a party's sentences, the labels the turn carries, and that context (none for the single lines
of the exemplars and the ordinary call lines). A turn's probability of a label is the highest of its
sentences' (the head reads each sentence beside the context), so a label is learnt from the turn
that carries it without anyone marking which sentence said it.

The layers below the tuned ones never change, so their output for every distinct sentence is
computed once (:class:`LayerCache`); an epoch then costs the top layers only. Leave-one-writer-out
trains one model per writer on the same cache.

Deterministic: fixed seeds, a fixed thread count (the sums' order depends on it), fixed batch order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from coach.detect import adapter as lowrank
from coach.detect.exemplars import split_sentences
from benchmarks.turn_model import HIDDEN, SCALE, TurnHead

TUNE_BLOCKS = 2  # the top transformer blocks tuned through the adapter; the rest is frozen
TUNE_RANK = 16
TUNE_EPOCHS = 3
TUNE_BATCH = 16  # turns
TUNE_RATE = 1e-3
TUNE_THREADS = 2
POSITIVE_WEIGHT = 3.0  # a turn that carries a label is rarer than the ordinary ones: each counts this much more
MAX_TOKENS = 128
MAX_SENTENCES = 16  # of a turn, in training (the first ones)
THRESHOLD_GRID = np.round(np.arange(0.05, 0.976, 0.025), 3)
TRIGGER_PRECISION = 0.9
CROSS_FOLDS = 4  # models trained without a quarter of the call files each, to set thresholds on turns they did not learn


@dataclass(frozen=True)
class Turn:
    speaker: str
    sentences: tuple[str, ...]
    labels: frozenset[str]
    context: tuple[str, ...] = ()  # the other party's previous turn, as sentences
    source: str = ""  # the file or writer it came from


def sentences_of(text: str) -> tuple[str, ...]:
    return tuple(split_sentences(text) or [text.strip()])


def call_turns(lines: Iterable[dict], source: str = "") -> list[Turn]:
    """The turns of whole calls (one turn a line, ``call``, ``speaker``, ``text``, ``labels``, in call
    order), each with the other party's previous turn in its call as its context."""
    turns, last = [], {}
    for line in lines:
        call, speaker = line.get("call", ""), line["speaker"]
        other = "customer" if speaker == "agent" else "agent"
        mine = sentences_of(line["text"])
        turns.append(Turn(speaker, mine, frozenset(line["labels"]), last.get((call, other), ()), source or str(line.get("source", ""))))
        last[(call, speaker)] = mine
    return turns


def single_turns(lines: Iterable[dict], source: str = "") -> list[Turn]:
    """Single lines (``speaker``, ``text``, ``labels``): turns with no context."""
    return [Turn(line["speaker"], sentences_of(line["text"]), frozenset(line["labels"]), (), source) for line in lines]


class LayerCache:
    """The frozen layers' output for each distinct sentence, computed once, and the tuned top blocks."""

    def __init__(self, encoder, blocks: int = TUNE_BLOCKS, log: Callable[[str], None] = print) -> None:
        self.encoder = encoder
        self.model = encoder.model
        self.layers = list(self.model.encoder.layer)
        self.first_tuned = len(self.layers) - blocks
        self.states: dict[str, torch.Tensor] = {}
        self.log = log

    def load(self, path: Path) -> None:
        """Sentences read by an earlier run of this encoder and block count (a benchmark's reruns)."""
        try:
            stored = torch.load(path)
        except (OSError, RuntimeError, EOFError):
            return
        if stored.get("key") == self._key():
            self.states.update(stored["states"])

    def save(self, path: Path) -> None:
        torch.save({"key": self._key(), "states": self.states}, path)

    def _key(self) -> str:
        return f"{self.encoder.name}:{len(self.layers)}:{self.first_tuned}:{MAX_TOKENS}"

    def add(self, texts: Iterable[str]) -> None:
        new = sorted({t for t in texts if t not in self.states}, key=len)
        if not new:
            return
        self.log(f"  reading {len(new)} sentences through the frozen layers")
        with torch.inference_mode():
            for i in range(0, len(new), 64):
                chunk = new[i : i + 64]
                batch = self.encoder._tokenizer(chunk, padding=True, truncation=True, max_length=MAX_TOKENS, return_tensors="pt")
                hidden = self.model(**batch, output_hidden_states=True).hidden_states[self.first_tuned]
                for text, states, mask in zip(chunk, hidden, batch["attention_mask"]):
                    self.states[text] = states[: int(mask.sum())].clone()

    def top(self, texts: list[str]) -> torch.Tensor:
        """Unit-length mean-pooled embeddings of cached ``texts`` through the top blocks (as they are now).
        Texts of like length go through together, so little is spent on padding."""
        order = sorted(range(len(texts)), key=lambda i: len(self.states[texts[i]]))
        pieces, start = [], 0
        while start < len(order):
            end = start + 1
            while end < len(order) and end - start < 64 and len(self.states[texts[order[end]]]) <= 1.5 * len(self.states[texts[order[start]]]) + 4:
                end += 1
            pieces.append(self._top([texts[i] for i in order[start:end]]))
            start = end
        pooled = torch.cat(pieces)
        return pooled[torch.argsort(torch.tensor(order))]

    def _top(self, texts: list[str]) -> torch.Tensor:
        lengths = [len(self.states[t]) for t in texts]
        width = max(lengths)
        states = torch.zeros(len(texts), width, self.encoder.dimensions)
        mask = torch.zeros(len(texts), width, dtype=torch.long)
        for i, t in enumerate(texts):
            states[i, : lengths[i]] = self.states[t]
            mask[i, : lengths[i]] = 1
        hook = self.model.embeddings.register_forward_hook(lambda module, args, output: states)
        self.model.encoder.layer = torch.nn.ModuleList(self.layers[self.first_tuned :])
        try:
            hidden = self.model(input_ids=torch.zeros_like(mask), attention_mask=mask).last_hidden_state
        finally:
            self.model.encoder.layer = torch.nn.ModuleList(self.layers)
            hook.remove()
        m = mask.unsqueeze(-1).to(hidden.dtype)
        return torch.nn.functional.normalize((hidden * m).sum(1) / m.sum(1).clamp(min=1e-9), dim=1)


class Head(torch.nn.Module):
    def __init__(self, dimensions: int, labels: int, seed: int) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.hidden = torch.nn.Linear(3 * dimensions, HIDDEN)
        self.out = torch.nn.Linear(HIDDEN, labels)
        self.drop = torch.nn.Dropout(0.1)

    def forward(self, u: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        c = c.expand_as(u)  # one context for all, or one per sentence
        x = torch.cat([SCALE * u, SCALE * c, SCALE * u.shape[1] ** 0.5 * u * c], dim=1)
        return self.out(self.drop(torch.nn.functional.gelu(self.hidden(x), approximate="tanh")))


@dataclass
class TunedModel:
    """A tuned adapter and head, read through the same cache they were trained on."""

    cache: LayerCache
    updates: dict
    head: Head
    labels: list[str]
    speakers: dict[str, str]
    thresholds: dict[str, float] = field(default_factory=dict)

    def vectors(self, texts: list[str]) -> dict[str, np.ndarray]:
        self.cache.add(texts)
        out = {}
        unique = sorted(set(texts))
        with torch.inference_mode():
            self.head.eval()
            for i in range(0, len(unique), 64):
                chunk = unique[i : i + 64]
                for t, v in zip(chunk, self.cache.top(chunk).numpy()):
                    out[t] = v
        return out

    def turn_probabilities(self, turns: list[Turn]) -> np.ndarray:
        """``(turns, labels)``: the highest of each turn's sentences' probabilities, in its context."""
        from benchmarks.turn_model import turn_vector

        vectors = self.vectors([s for t in turns for s in t.sentences + t.context])
        head = self.as_head()
        out = np.zeros((len(turns), len(self.labels)))
        for i, t in enumerate(turns):
            u = np.stack([vectors[s] for s in t.sentences])
            c = turn_vector(np.stack([vectors[s] for s in t.context])) if t.context else None
            out[i] = head.probabilities(u, c).max(axis=0)
        return out

    def as_head(self) -> TurnHead:
        p = {k: v.detach().numpy().astype(np.float32) for k, v in self.head.state_dict().items()}
        return TurnHead(self.labels, self.speakers, p["hidden.weight"].T.copy(), p["hidden.bias"], p["out.weight"].T.copy(),
                        p["out.bias"], dict(self.thresholds))


def tune(cache: LayerCache, turns: list[Turn], labels: list[str], speakers: dict[str, str], seed: int = 0,
         log: Callable[[str], None] = print) -> TunedModel:
    """Tune the top blocks' adapter and a fresh head on ``turns`` (the cache's encoder is changed in place:
    each call starts from the frozen weights, so one cache serves every fold)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(TUNE_THREADS)
    try:
        torch.manual_seed(seed)
        for name, module in list(cache.model.named_modules()):  # unwrap a previous fold's adapter
            for child_name, child in list(module.named_children()):
                if isinstance(child, lowrank.LowRankUpdate):
                    setattr(module, child_name, child.linear)
        cache.layers = list(cache.model.encoder.layer)
        blocks = list(range(cache.first_tuned, len(cache.layers)))
        updates = lowrank.attach(cache.model, rank=TUNE_RANK, alpha=2.0 * TUNE_RANK, seed=seed, blocks=blocks)
        cache.layers = list(cache.model.encoder.layer)
        cache.add(s for t in turns for s in t.sentences[:MAX_SENTENCES] + t.context[:MAX_SENTENCES])
        head = Head(cache.encoder.dimensions, len(labels), seed)
        index = {label: i for i, label in enumerate(labels)}
        targets = torch.zeros(len(turns), len(labels))
        masks = torch.zeros(len(turns), len(labels))
        for i, t in enumerate(turns):
            for label in t.labels:
                if label in index:
                    targets[i, index[label]] = 1.0
            for label in labels:
                if speakers[label] == t.speaker:
                    masks[i, index[label]] = 1.0
        weights = masks * (1.0 + (POSITIVE_WEIGHT - 1.0) * targets)
        trainable = [p for u in updates.values() for p in (u.a, u.b)] + list(head.parameters())  # no updates: a frozen encoder
        optimizer = torch.optim.AdamW(trainable, lr=TUNE_RATE, weight_decay=0.01)
        order = torch.Generator().manual_seed(seed)
        cache.model.train()
        head.train()
        for epoch in range(TUNE_EPOCHS):
            total = 0.0
            for batch in torch.randperm(len(turns), generator=order).split(TUNE_BATCH):
                chosen = [turns[i] for i in batch.tolist()]
                said = sorted({s for t in chosen for s in t.sentences[:MAX_SENTENCES]})
                heard = sorted({s for t in chosen for s in t.context[:MAX_SENTENCES]} - set(said))
                where = {s: k for k, s in enumerate(said + heard)}
                vectors = cache.top(said)
                if heard:  # the context is read by the encoder as it is, not tuned through (a third of the cost saved)
                    with torch.no_grad():
                        vectors = torch.cat([vectors, cache.top(heard)])
                rows = [where[s] for t in chosen for s in t.sentences[:MAX_SENTENCES]]
                owner = torch.tensor([i for i, t in enumerate(chosen) for _ in t.sentences[:MAX_SENTENCES]])
                context = torch.zeros(len(chosen), vectors.shape[1])
                said = [(i, where[s]) for i, t in enumerate(chosen) for s in t.context[:MAX_SENTENCES]]
                if said:
                    turn, row = zip(*said)
                    context = context.index_add(0, torch.tensor(turn), vectors[list(row)])
                    context = torch.nn.functional.normalize(context, dim=1)  # zeros stay zeros
                sentence_logits = head(vectors[rows], context[owner])
                logits = torch.full((len(chosen), len(labels)), -1e4).scatter_reduce(
                    0, owner.unsqueeze(1).expand(-1, len(labels)), sentence_logits, reduce="amax", include_self=True)
                loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, targets[batch], weight=weights[batch], reduction="sum")
                loss = loss / weights[batch].sum().clamp(min=1.0)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                total += loss.item() * len(batch)
            log(f"  epoch {epoch + 1}/{TUNE_EPOCHS}: loss {total / len(turns):.4f}")
        cache.model.eval()
        head.eval()
        return TunedModel(cache, updates, head, labels, speakers)
    finally:
        torch.set_num_threads(threads)


def best_threshold(probability: np.ndarray, truth: np.ndarray, ruled: np.ndarray | None = None,
                   vetoed: np.ndarray | None = None) -> tuple[float, float, float]:
    """The threshold with the most recall at which what the model adds is right at least
    ``TRIGGER_PRECISION`` of the time (ties to the stricter), with the precision and recall of the
    detector as it runs; above 1 (switched off) when no threshold gets there. ``ruled``: the turns a
    phrase rule already flags (the model adds nothing there); ``vetoed``: those whose words veto the
    label (the model may not fire there)."""
    ruled = np.zeros(len(truth), bool) if ruled is None else ruled
    vetoed = np.zeros(len(truth), bool) if vetoed is None else vetoed

    def figures(fired: np.ndarray) -> tuple[int, int]:
        return int((fired & truth).sum()), int((fired & ~truth).sum())

    tp, fp = figures(ruled)
    best = (1.01, tp / (tp + fp) if tp + fp else 1.0, tp / max(int(truth.sum()), 1))
    for t in THRESHOLD_GRID:
        added = (probability >= t) & ~vetoed & ~ruled
        add_tp, add_fp = figures(added)
        if not add_tp or add_tp / (add_tp + add_fp) < TRIGGER_PRECISION:
            continue
        tp, fp = figures(ruled | added)
        recall = tp / max(int(truth.sum()), 1)
        if recall >= best[2]:
            best = (float(t), tp / (tp + fp), recall)
    return best


def rule_verdicts(turns: list[Turn], labels: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """``(turns, labels)`` booleans: which labels a phrase rule raises on each turn, and which its words veto."""
    from coach.detect.triggers import RULES

    ruled = np.zeros((len(turns), len(labels)), bool)
    vetoed = np.zeros((len(turns), len(labels)), bool)
    index = {label: i for i, label in enumerate(labels)}
    for k, t in enumerate(turns):
        text = " ".join(t.sentences)
        for rule in RULES:
            if rule.label in index and rule.speaker == t.speaker:
                ruled[k, index[rule.label]] |= rule.find(text) is not None
                vetoed[k, index[rule.label]] |= rule.vetoed(text) is not None
    return ruled, vetoed


def cross_fitted(cache: LayerCache, base: list[Turn], calls: dict[str, list[Turn]], calibration: list[Turn], labels: list[str],
                 speakers: dict[str, str], folds: int = CROSS_FOLDS, log: Callable[[str], None] = print) -> tuple[list[Turn], np.ndarray]:
    """Probabilities of turns no model that gave them learnt from: each call file's turns by a model trained
    without its fold of files (turns in their call, as a live call reads them), and the calibration lines
    by the mean of those models. Thresholds set on these hold on calls the final model has not seen
    better than thresholds set on single lines."""
    names = sorted(calls)
    groups = [names[k::folds] for k in range(folds) if names[k::folds]]
    turns, probabilities = [], []
    lines = np.zeros((len(calibration), len(labels)))
    for k, held in enumerate(groups):
        log(f"  cross-fitting {k + 1}/{len(groups)}: without {', '.join(held)}")
        model = tune(cache, base + [t for n in names if n not in held for t in calls[n]], labels, speakers, seed=k + 1, log=lambda line: None)
        mine = [t for n in held for t in calls[n]]
        turns += mine
        probabilities.append(model.turn_probabilities(mine))
        if calibration:
            lines += model.turn_probabilities(calibration) / len(groups)
    return turns + calibration, np.concatenate(probabilities + [lines]) if probabilities else lines


def calibrate(model: TunedModel, turns: list[Turn], probabilities: np.ndarray | None = None,
              log: Callable[[str], None] = print, with_rules: bool = True) -> dict[str, dict]:
    """Each label's threshold on ``turns`` (none of which ``probabilities`` came from a model that learnt;
    without them, ``model``'s own on turns it did not learn from): the most recall at precision >= 0.9 of
    the detector as it runs (``with_rules``: the phrase rules, and the model where no veto speaks), or
    of the model alone. Returns the figures."""
    if probabilities is None:
        probabilities = model.turn_probabilities(turns)
    ruled, vetoed = rule_verdicts(turns, model.labels) if with_rules else (None, None)
    quality = {}
    for c, label in enumerate(model.labels):
        mine = np.array([t.speaker == model.speakers[label] for t in turns], bool)
        truth = np.array([label in t.labels for t in turns], bool)[mine]
        t, precision, recall = best_threshold(probabilities[mine, c], truth, None if ruled is None else ruled[mine, c],
                                              None if vetoed is None else vetoed[mine, c])
        model.thresholds[label] = round(t, 3)
        quality[label] = {"calibration_precision": round(precision, 3), "calibration_recall": round(recall, 3), "calibration_lines": int(truth.sum())}
        log(f"  {label:24s} p >= {t:.3f}: precision {precision:.2f} recall {recall:.2f} on {int(truth.sum())} turns that carry it")
    return quality
