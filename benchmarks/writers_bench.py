#!/usr/bin/env python3
"""Leave-one-writer-out: a trigger model trained on every writer's calls but one, scored on that one.

    python benchmarks/writers_bench.py [--encoder mpnet|minilm] [--blocks N] [--calibrate lines,...]
        [--folds w1,w2] [--heldout DIR_OR_FILE ...] [--json FILE]

The model is the candidate turn model (``turn_model*.py``; not the shipped ensemble, see
docs/decisions/0003-trigger-ensemble-stays.md). The training calls are ``models/data/calls/*.jsonl``
(one group, ``calls0``: six writers before writers were recorded) and ``models/data/writers/<w>.jsonl``
(one writer each, a register each). For each writer, the model is trained on the exemplars, the
ordinary lines and every other writer's calls, its thresholds set on the calibration lines (or on
cross-fitted call turns), and the left-out writer's turns are scored: the model alone, the phrase
rules alone, and both as the detector runs them (a rule, or the model unless the label's veto speaks).
Counts only: no line is printed, so held-out sets stay unread.

``--heldout``: also train once on everything and score these files (whole calls are read in their
call; single lines alone), which nothing was trained or calibrated on. The frozen layers' output is
kept in ``bench-out/layer-cache-*.pt`` between runs.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from coach.config import Settings  # noqa: E402
from coach.detect.triggers import RULES  # noqa: E402


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def training_files(only: set[str] | None = None) -> dict[str, tuple[str, list[dict]]]:
    """Each training call file's writer (``calls0`` for the six unrecorded ones) and lines."""
    out = {p.stem: ("calls0", read_jsonl(p)) for p in sorted((ROOT / "models/data/calls").glob("*.jsonl"))}
    for p in sorted((ROOT / "models/data/writers").glob("*.jsonl")):
        if only is None or p.stem in only:
            out[p.stem] = (p.stem, read_jsonl(p))
    return out


def score(model, turns, labels, system: str = "both") -> dict:
    """Micro counts over the word-borne labels: a label raised on a turn that carries it is a true
    positive. ``system``: ``model`` (the trigger model alone), ``rules`` (the phrase rules alone) or
    ``both`` (as ``coach analyze`` detects: a rule, or the model unless the label's veto says otherwise)."""
    from coach.detect.triggers import RULES

    probabilities = model.turn_probabilities(turns)
    vetoes = {rule.label: rule for rule in RULES if rule.veto is not None}
    counts = {label: [0, 0, 0] for label in labels}  # tp, fp, fn
    for t, p in zip(turns, probabilities):
        text = " ".join(t.sentences)
        by_rule = {r.label for r in RULES if r.speaker == t.speaker and r.find(text)} if system != "model" else set()
        by_model = set()
        if system != "rules":
            by_model = {label for c, label in enumerate(model.labels)
                        if model.speakers[label] == t.speaker and p[c] >= model.thresholds[label]
                        and not (system == "both" and label in vetoes and vetoes[label].vetoed(text))}
        fired_labels = by_rule | by_model
        for label in labels:
            if RULES and next(r.speaker for r in RULES if r.label == label) != t.speaker:
                continue
            fired, true = label in fired_labels, label in t.labels
            if fired and true:
                counts[label][0] += 1
            elif fired:
                counts[label][1] += 1
            elif true:
                counts[label][2] += 1
    return counts


CALIBRATIONS = ("crossfit", "lines", "crossfit-alone", "lines-alone")


def fit(cache, base, calls, calibration, labels, speakers, how: list[str]):
    """make train's recipe on these calls: the model on all of them, and its thresholds for each way of
    setting them in ``how``: on cross-fitted call turns and the calibration lines (``crossfit``) or on
    the lines alone (``lines``); for the most recall at which what the model adds to the phrase rules is
    right 9 times in 10, or (``-alone``) at which the model alone is."""
    from benchmarks.turn_model_training import calibrate, cross_fitted, tune

    model = tune(cache, base + [t for turns in calls.values() for t in turns], labels, speakers, log=lambda line: None)
    thresholds = {}
    if any(h.startswith("crossfit") for h in how):
        turns, probabilities = cross_fitted(cache, base, calls, calibration, labels, speakers, log=lambda line: None)
    for h in how:
        on, _, alone = h.partition("-")
        if on == "crossfit":
            calibrate(model, turns, probabilities, log=lambda line: None, with_rules=not alone)
        else:
            calibrate(model, calibration, log=lambda line: None, with_rules=not alone)
        thresholds[h] = dict(model.thresholds)
    return model, thresholds


def totals(counts: dict) -> tuple[float, float, int, int, int]:
    tp = sum(c[0] for c in counts.values())
    fp = sum(c[1] for c in counts.values())
    fn = sum(c[2] for c in counts.values())
    return tp / max(tp + fp, 1), tp / max(tp + fn, 1), tp, fp, fn


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoder", default=None, help="the text encoder (default: the settings')")
    parser.add_argument("--blocks", type=int, default=None, help="top encoder blocks tuned (default: make train's)")
    parser.add_argument("--calibrate", default="crossfit",
                        help=f"ways of setting the thresholds, comma-separated, of {', '.join(CALIBRATIONS)} (see fit())")
    parser.add_argument("--writers", default="", help="only these writers' files of models/data/writers (comma-separated; default all)")
    parser.add_argument("--no-context", action="store_true", help="read every turn alone (no other party's turn beside it)")
    parser.add_argument("--folds", default="", help="only these writers (comma-separated)")
    parser.add_argument("--heldout", nargs="*", default=[], help="whole-call files or folders scored by the model trained on all")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    from coach.detect.encoder import TextEncoder
    from coach.detect.exemplars import load_background, load_exemplars
    from coach.detect.triggers import rule_flags
    from coach.models import resolve_text_model
    from coach.train import read_calibration
    from benchmarks.turn_model_training import MAX_SENTENCES, TUNE_BLOCKS, LayerCache, call_turns, single_turns

    settings = Settings()
    text = settings.text
    encoder_name = args.encoder or text.encoder
    encoder = TextEncoder(resolve_text_model(encoder_name, settings.models_dir), 2)
    sets = load_exemplars(text.exemplars)
    labels = sorted({rule.label for rule in RULES})
    speakers = {label: next(r.speaker for r in RULES if r.label == label) for label in labels}
    base = []
    for label, s in sets.items():
        base += single_turns([{"speaker": s.speaker, "text": e, "labels": [label]} for e in s.examples], "exemplars")
        base += single_turns([{"speaker": s.speaker, "text": e, "labels": []} for e in s.not_], "exemplars")
    background = load_background(text.utterances, rule_flags)
    base += single_turns([{"speaker": sp, "text": t, "labels": []} for sp, lines in background.items() for t in lines], "ordinary")
    calibration = single_turns(read_calibration(text.calibration), "calibration")
    calls = {name: call_turns(lines, writer) for name, (writer, lines) in training_files(set(args.writers.split(",")) if args.writers else None).items()}
    if args.no_context:
        from dataclasses import replace

        calls = {name: [replace(t, context=()) for t in turns] for name, turns in calls.items()}
    writers = {}
    for name, turns in calls.items():
        writers.setdefault(turns[0].source, []).extend(turns)
    chosen = [w for w in writers if not args.folds or w in args.folds.split(",")]
    print(f"encoder {encoder_name}, {TUNE_BLOCKS if args.blocks is None else args.blocks} top blocks tuned, thresholds by {args.calibrate}; base {len(base)} turns; writers: " + ", ".join(f"{w} {len(t)}" for w, t in writers.items()), flush=True)
    blocks = TUNE_BLOCKS if args.blocks is None else args.blocks
    cache = LayerCache(encoder, blocks, log=lambda line: print(line, flush=True))
    stored = ROOT / "bench-out" / f"layer-cache-{encoder_name}-{blocks}.pt"  # the frozen layers' output, kept between runs
    cache.load(stored)
    report = {"encoder": encoder_name, "blocks": blocks, "calibrate": args.calibrate, "folds": {}}
    cache.add(s for ts in [base, calibration, *writers.values()] for t in ts for s in t.sentences[:MAX_SENTENCES] + t.context[:MAX_SENTENCES])
    stored.parent.mkdir(exist_ok=True)
    cache.save(stored)
    hows = args.calibrate.split(",")
    if set(hows) - set(CALIBRATIONS):
        parser.error(f"--calibrate: one of {', '.join(CALIBRATIONS)}")
    systems = [f"{system}/{how}" for how in hows for system in ("model", "both")] + ["rules"]
    all_counts = {system: {label: [0, 0, 0] for label in labels} for system in systems}

    def scored(model, thresholds, turns):
        out = {}
        for system in systems:
            kind, _, how = system.partition("/")
            model.thresholds = thresholds[how] if how else next(iter(thresholds.values()))
            out[system] = score(model, turns, labels, kind)
        return out

    for writer in chosen:
        started = time.perf_counter()
        mine = {name: turns for name, turns in calls.items() if turns[0].source != writer}
        model, thresholds = fit(cache, base, mine, calibration, labels, speakers, hows)
        report["folds"][writer] = {}
        for system, counts in scored(model, thresholds, writers[writer]).items():
            for label, c in counts.items():
                all_counts[system][label] = [a + b for a, b in zip(all_counts[system][label], c)]
            p, r, tp, fp, fn = totals(counts)
            report["folds"][writer][system] = {"precision": round(p, 3), "recall": round(r, 3), "tp": tp, "fp": fp, "fn": fn}
            print(f"left out {writer:8s} {system:16s}: precision {p:.3f} recall {r:.3f} (tp {tp} fp {fp} fn {fn})", flush=True)
        print(f"  ({time.perf_counter() - started:.0f} s)", flush=True)
    if chosen:
        report["micro"], report["labels"] = {}, {}
        for system in systems:
            p, r, tp, fp, fn = totals(all_counts[system])
            report["micro"][system] = {"precision": round(p, 3), "recall": round(r, 3), "tp": tp, "fp": fp, "fn": fn}
            report["labels"][system] = {label: dict(zip(("tp", "fp", "fn"), c)) for label, c in all_counts[system].items()}
            print(f"leave-one-writer-out, {system}, micro: precision {p:.3f} recall {r:.3f} (tp {tp} fp {fp} fn {fn})")
            for label, (tp_, fp_, fn_) in all_counts[system].items():
                print(f"  {label:24s} precision {tp_ / max(tp_ + fp_, 1):.2f} recall {tp_ / max(tp_ + fn_, 1):.2f} (tp {tp_} fp {fp_} fn {fn_})")
    if args.heldout:
        started = time.perf_counter()
        model, thresholds = fit(cache, base, calls, calibration, labels, speakers, hows)
        report["heldout"] = {"train_seconds": round(time.perf_counter() - started)}
        print(f"trained on every writer in {time.perf_counter() - started:.0f} s", flush=True)
        files = [f for h in args.heldout for f in (sorted(Path(h).glob("*.jsonl")) if Path(h).is_dir() else [Path(h)])]
        for name in args.heldout:
            mine = [f for f in files if f == Path(name) or f.parent == Path(name)]
            turns = [t for f in mine for t in (call_turns if "call" in read_jsonl(f)[0] and not args.no_context else single_turns)(read_jsonl(f), f.stem)]
            report["heldout"][name] = {}
            for system, counts in scored(model, thresholds, turns).items():
                p, r, tp, fp, fn = totals(counts)
                report["heldout"][name][system] = {"precision": round(p, 3), "recall": round(r, 3), "tp": tp, "fp": fp, "fn": fn}
                print(f"held out {name} {system}: precision {p:.3f} recall {r:.3f} (tp {tp} fp {fp} fn {fn})")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
