"""Probe (issue 3): train extra trigger adapters with other seeds, same data and recipe as `make train`.

    python benchmarks/probes/ensemble_train.py 1 2   # writes /tmp/ens/adapter-sN.npz and head-sN.npz
"""
import sys
from pathlib import Path

import numpy as np

from coach import train
from coach.config import Settings
from coach.detect.encoder import TextEncoder
from coach.detect.exemplars import load_background, load_exemplars
from coach.detect.triggers import rule_flags
from coach.models import resolve_text_model

OUT = Path("/tmp/ens")

s = Settings().text
encoder = TextEncoder(resolve_text_model(s.encoder), s.threads)
sets = load_exemplars(s.exemplars)
texts, y, _ = train.trigger_training_lines(sets, load_background(s.utterances, rule_flags))
OUT.mkdir(exist_ok=True)
for seed in map(int, sys.argv[1:]):
    w, b = train.tune_encoder(encoder, texts, y, len(sets) + 1, OUT / f"adapter-s{seed}.npz", print, seed=seed)
    np.savez(OUT / f"head-s{seed}.npz", w=w, b=b)
