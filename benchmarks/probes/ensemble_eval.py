"""Probe (issue 3): average the trigger heads of several adapters (seed 0 = the committed one), calibrate
thresholds as `make train` does, score the held-out lines and replay the calls.

    python benchmarks/probes/ensemble_eval.py 0,1,2 bench-out/w-lora2/streams/synth/streaming bench-out/w-lora2/truth-synth
"""
import sys, subprocess
from pathlib import Path
import numpy as np
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import lines_bench, replay_detectors
from coach.config import Settings
from coach import train as T
from coach.models import load_text_analyzer, resolve_text_model
from coach.detect.encoder import TextEncoder
from coach.detect.exemplars import ExemplarMatch, split_sentences, load_background
from coach.detect.triggers import rule_flags
from coach.detect.sentiment import softmax
from coach.detect.text import TextReading

settings = Settings(); base = load_text_analyzer(settings)
plain = TextEncoder(resolve_text_model(settings.text.encoder), settings.text.threads)
labels = list(base.index.sets)
seeds = [int(x) for x in sys.argv[1].split(",")]
members = []
for seed in seeds:
    if seed == 0:
        enc = base.encoder; wb = {sp: (h.weights, h.bias) for sp, h in base.index.heads.items()}
    else:
        enc = plain.adapted(Path(f"/tmp/ens/adapter-s{seed}.npz")); d = np.load(f"/tmp/ens/head-s{seed}.npz")
        wb = {}
        for sp, h in base.index.heads.items():
            rows = [0] + [labels.index(n) + 1 for n in h.classes[1:]]
            wb[sp] = (d["w"][rows], d["b"][rows])
    ex = {l: enc.embed(base.index.sets[l].examples) for l in labels}
    members.append((enc, wb, ex))

def scores(speaker, sentences):
    h = base.index.heads[speaker]; P = 0; N = {}
    for enc, wb, ex in members:
        x = enc.embed(sentences); w, b = wb[speaker]
        P = P + softmax(x @ w.T + b)
        for l in h.classes[1:]:
            N[l] = N.get(l, 0) + (x @ ex[l].T)
    P = P / len(members)
    return P, {l: v / len(members) for l, v in N.items()}

# calibration, as train_triggers builds it
_, _, kept_out = T.trigger_training_lines(base.index.sets, load_background(settings.text.utterances, rule_flags))
cal = T.read_calibration(settings.text.calibration) + kept_out
TH, FL = {}, {}
for sp, h in base.index.heads.items():
    lines = [l for l in cal if l["speaker"] == sp]; sents, owner = [], []
    for i, l in enumerate(lines):
        for s in split_sentences(l["text"]) or [l["text"]]:
            sents.append(s); owner.append(i)
    P, N = scores(sp, sents)
    for c, name in enumerate(h.classes[1:], start=1):
        truth = np.array([name in l["labels"] for l in lines], bool)
        t, f, prec, rec = T.best_thresholds(P[:, c], N[name].max(axis=1), np.array(owner), truth)
        TH[name], FL[name] = t, f
        print(f"  {name:24s} t {t:.3f} (committed {h.thresholds.get(name)}) floor {f:.2f} (committed {h.floors.get(name)}) P {prec:.2f} R {rec:.2f}", flush=True)

class Ens:
    def read_now(self, speaker, text):
        r = base.read_now(speaker, text)
        sents = split_sentences(text)
        if not sents or speaker not in base.index.heads: return TextReading(r.sentiment, [])
        h = base.index.heads[speaker]; P, N = scores(speaker, sents); found = []
        for c, name in enumerate(h.classes[1:], start=1):
            near = N[name].max(axis=1)
            fires = (P[:, c] >= TH[name]) & (near >= FL[name])
            if fires.any():
                i = int(np.argmax(np.where(fires, P[:, c], -1))); j = int(N[name][i].argmax())
                found.append(ExemplarMatch(name, float(P[i, c]), sents[i], base.index.sets[name].examples[j], float(N[name][i, j])))
        return TextReading(r.sentiment, found)
an = Ens()
for path in ["benchmarks/lines/heldout.jsonl", "benchmarks/lines/heldout2.jsonl"]:
    lines = lines_bench.read_lines(Path(path)); c = lines_bench.score(lines, lines_bench.detect(lines, an))
    tp = sum(v["tp"] for v in c.values()); fp = sum(v["fp"] for v in c.values()); fn = sum(v["fn"] for v in c.values())
    print(f"{path}: R {tp/(tp+fn):.3f} P {tp/(tp+fp):.3f} fp {fp} | " + " ".join(f"{k[:6]} {v['tp']}/{v['tp']+v['fn']},{v['fp']}" for k, v in c.items()), flush=True)
out = Path(f"/tmp/ens/replay-{'-'.join(map(str, seeds))}"); out.mkdir(exist_ok=True)
streams = Path(sys.argv[2]); truth = Path(sys.argv[3])
for st in sorted(streams.glob("*.jsonl")):
    replay_detectors.replay(st, an, out / st.name, settings.text.mood_carry)
r = subprocess.run([sys.executable, "../shared/tools/score_calls.py", str(truth), str(out)], capture_output=True, text=True)
print(r.stdout[-2500:])
