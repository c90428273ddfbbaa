"""Probe (issue 29): long turns decoded whole on one worker against in pieces on two workers at once.

For every turn of at least ``--min`` seconds in the dev calls (cut from its own channel with the
speech pad, as a final is), decode it whole (beam 5, the finals' options) and in pieces cut at its
quietest frames (``quiet_cuts``) on two threads at once; print the wall time of each and the word
errors against the script. Usage: python benchmarks/probes/pieces_idle.py 'bench-out/calls/dev-*.wav'
"""

from __future__ import annotations

import argparse
import glob
import json
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from benchmarks.word_errors import edit_distance, words
from coach.audio.files import read_blocks
from coach.asr.transcriber import DecodeOptions, joined, quiet_cuts
from coach.config import Settings
from coach.models import load_transcriber


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("recordings")
    ap.add_argument("--min", type=float, default=8.0)
    ap.add_argument("--max", type=float, default=28.0, help="longer turns are cut by the endpointer live")
    ap.add_argument("--piece", type=float, nargs="+", default=[8.0])
    args = ap.parse_args()
    settings = Settings()
    asr = settings.asr
    model = load_transcriber(settings)
    options = DecodeOptions(asr.beam_size, asr.window_margin, asr.language, asr.min_window)
    pool = ThreadPoolExecutor(2)
    cpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    print(next(line for line in cpu.splitlines() if "Model name" in line))
    ref_words = 0
    errors = {"whole": 0, **{p: 0 for p in args.piece}}
    walls = {"whole": [], **{p: [] for p in args.piece}}
    for path in sorted(glob.glob(args.recordings)):
        truth = json.loads(Path(path).with_suffix(".truth.json").read_text())
        audio, rate = np.concatenate(list(read_blocks(Path(path), 10.0))), 16000
        said: list[str] = []
        for turn in truth["turns"]:
            context = " ".join(said[-40:])
            said += turn["text"].split()
            if not args.min <= turn["end"] - turn["start"] <= args.max:
                continue
            ch = truth["channels"][turn["speaker"]]
            clip = audio[int((turn["start"] - 0.4) * rate): int((turn["end"] + 0.4) * rate), ch].copy()
            ref = words(turn["text"])
            ref_words += len(ref)
            t = time.perf_counter()
            whole = model.transcribe(clip, options, context)
            walls["whole"].append(time.perf_counter() - t)
            errors["whole"] += edit_distance(ref, words(whole.text))
            line = f"{Path(path).stem[:6]} {turn['end'] - turn['start']:5.1f}s whole {walls['whole'][-1]:.2f}s e={edit_distance(ref, words(whole.text))}"
            for piece in args.piece:
                bounds = [0, *quiet_cuts(clip, piece), clip.size]
                t = time.perf_counter()
                parts = list(pool.map(lambda ab: model.transcribe(clip[ab[0]:ab[1]], options, context), zip(bounds, bounds[1:])))
                walls[piece].append(time.perf_counter() - t)
                text = joined(parts).text
                errors[piece] += edit_distance(ref, words(text))
                line += f" | {piece:g}s x{len(bounds) - 1} {walls[piece][-1]:.2f}s e={edit_distance(ref, words(text))}"
            print(line, flush=True)
    for key in walls:
        w = np.array(walls[key])
        print(f"{key}: WER {errors[key] / ref_words:.4f}  wall mean {w.mean():.2f}s p95 {np.percentile(w, 95):.2f}s max {w.max():.2f}s  ({len(w)} turns, {ref_words} words)")


if __name__ == "__main__":
    main()
