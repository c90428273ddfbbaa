"""Text sentiment on real support language against a lexicon baseline (VADER), and the detectors' cost
per segment, measured in one run.

- MAIA-DQE (``../shared/data/text/maia_dqe``, CC BY-ND 4.0): the customer sentences of real
  customer-support chats (machine-translated to English), each labelled with an emotion. AUC of
  the sentiment at separating disappointment/frustration/anger from neutral/happiness/empathy
  (confusion and anxiety left out: neither side).
- VADER's own ground truth (``../shared/data/text/vader_icwsm2014``, MIT): human-rated sentences
  (tweets, product and movie reviews, editorials); AUC negative (mean rating < 0) against positive
  (> 0), on every ``--every``-th sentence. VADER was built on these, so it plays at home here.
- Cost: milliseconds per final segment of the streams in ``--streams`` (rules; encoder + head +
  exemplar matching), on one thread.

    python benchmarks/text_bench.py --streams bench-out/streams/synth/streaming-finals
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from coach.config import Settings  # noqa: E402
from coach.models import text_analyzer as load_text_analyzer  # noqa: E402
from coach.detect.triggers import TriggerDetector  # noqa: E402
from coach.events import TranscriptEvent  # noqa: E402
from coach.train import auc  # noqa: E402

MAIA_NEGATIVE = {3, 5, 6}  # disappointment, frustration, anger (labels.txt order)
MAIA_OTHER = {0, 1, 2}  # empathy, happiness, neutral


def maia_sentences(folder: Path) -> list[tuple[str, bool]]:
    out = []
    for path in sorted(folder.glob("*.json")):
        for dialogue in json.loads(path.read_text()):
            for turn in dialogue["turns"]:
                if turn["floor"] != "inbound":  # the customer; its English is the machine translation
                    continue
                for text, emotion in zip(turn["text_mt"], turn["Emotion"]):
                    if "#" in text or len(text.split()) < 2 or emotion not in MAIA_NEGATIVE | MAIA_OTHER:
                        continue
                    out.append((text, emotion in MAIA_NEGATIVE))
    return out


def vader_sentences(folder: Path, every: int) -> list[tuple[str, bool]]:
    out = []
    for path in sorted(folder.glob("*_GroundTruth.txt")):
        rows = [line.split("\t", 2) for line in path.read_text(errors="replace").splitlines() if line.count("\t") >= 2]
        for _, rating, text in rows[::every]:
            if float(rating) != 0:
                out.append((text.strip(), float(rating) < 0))
    return out


def compare(name: str, items: list[tuple[str, bool]], analyzer, vader) -> dict:
    import numpy as np

    texts = [t for t, _ in items]
    negative = np.array([n for _, n in items])
    started = time.process_time()
    ours = np.concatenate([analyzer.head.score(analyzer.encoder.embed(texts[i : i + 32])) for i in range(0, len(texts), 32)])
    ours_cpu = time.process_time() - started
    started = time.process_time()
    lexicon = np.array([vader.polarity_scores(t)["compound"] for t in texts])
    vader_cpu = time.process_time() - started
    r = {"sentences": len(texts), "negative": int(negative.sum()),
         "coach_auc": auc(-ours, negative), "vader_auc": auc(-lexicon, negative),
         "coach_ms_per_sentence": 1000 * ours_cpu / len(texts), "vader_ms_per_sentence": 1000 * vader_cpu / len(texts)}
    print(f"[{name}] {json.dumps(r)}", file=sys.stderr)
    return r


def segment_costs(streams: Path, analyzer) -> dict:
    finals = [json.loads(line) for p in sorted(streams.glob("*.jsonl")) for line in p.read_text().splitlines()]
    finals = [e for e in finals if e["type"] == "transcript" and e.get("final") and e["text"]]
    rules = TriggerDetector()
    rule_ms, model_ms = [], []
    for e in finals:
        event = TranscriptEvent(e["at"], e["speaker"], e["id"], e["start"], e["end"], e["text"], True)
        started = time.perf_counter()
        rules.on_transcript(event)
        rule_ms.append(1000 * (time.perf_counter() - started))
        model_ms.append(1000 * analyzer.read_now(e["speaker"], e["text"]).seconds)
    q = lambda xs, f: sorted(xs)[int(f * (len(xs) - 1))]  # noqa: E731
    return {"segments": len(finals), "words_median": statistics.median(len(e["text"].split()) for e in finals),
            "rules_ms_median": statistics.median(rule_ms), "rules_ms_p90": q(rule_ms, 0.9),
            "models_ms_median": statistics.median(model_ms), "models_ms_p90": q(model_ms, 0.9), "models_ms_max": max(model_ms)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    ap.add_argument("--streams", type=Path, help="a folder of streams whose final segments to time the detectors on")
    ap.add_argument("--every", type=int, default=8, help="VADER set: every Nth sentence")
    ap.add_argument("--out", type=Path, default=ROOT / "bench-out" / "text.json")
    args = ap.parse_args()
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    settings = Settings()
    analyzer = load_text_analyzer(settings.text, settings.models_dir)
    vader = SentimentIntensityAnalyzer()
    text = args.shared / "data" / "text"
    results = {"maia_dqe": compare("maia_dqe", maia_sentences(text / "maia_dqe"), analyzer, vader),
               "vader_icwsm2014": compare("vader_icwsm2014", vader_sentences(text / "vader_icwsm2014", args.every), analyzer, vader)}
    if args.streams:
        results["cost"] = segment_costs(args.streams, analyzer)
        print(f"[cost] {json.dumps(results['cost'])}", file=sys.stderr)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1))
    print("| set | sentences (negative) | coach AUC | VADER AUC | coach ms/sentence | VADER ms/sentence |\n|---|---|---|---|---|---|")
    for name in ("maia_dqe", "vader_icwsm2014"):
        r = results[name]
        print(f"| {name} | {r['sentences']} ({r['negative']}) | {r['coach_auc']:.3f} | {r['vader_auc']:.3f} | "
              f"{r['coach_ms_per_sentence']:.1f} | {r['vader_ms_per_sentence']:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
