"""Probe: one ensemble from the members of several trainings, calibrated as ``make train`` calibrates.

``python benchmarks/probes/merge_members.py models/heads/triggers.json bench-out/seeds345/triggers.json``
takes every member (adapter and head) of the given trigger heads, in order, and runs ``coach train``
with ``tune_encoder`` replaced by a lookup of those members, so the thresholds, floors and the
sentiment head come from the same code as the shipped ones. The heads must come from the same
inputs (their ``trained_on`` must agree). Output goes where ``COACH_TEXT__TRIGGERS`` and
``COACH_TEXT__HEAD`` point, which must not be the shipped heads. A probe for a bigger ensemble
without training the members again, not a product path.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np

from other_seeds import scratch_settings

from coach import train


def full_head(member: dict, speakers: dict, labels: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """A member's softmax over ``none`` and every label, put back together from its per-speaker rows."""
    classes = ["none", *labels]
    weights, bias = [None] * len(classes), [None] * len(classes)
    for speaker, rows in member["speakers"].items():
        for row, name in enumerate(speakers[speaker]["classes"]):
            weights[classes.index(name)] = np.asarray(rows["weights"][row], np.float64)
            bias[classes.index(name)] = float(rows["bias"][row])
    return np.stack(weights), np.asarray(bias)


def main(paths: list[Path]) -> int:
    settings = scratch_settings()
    heads = [json.loads(p.read_text()) for p in paths]
    if len({h["trained_on"] for h in heads}) != 1:
        raise SystemExit("these heads were trained on different inputs")
    from coach.detect.exemplars import load_exemplars

    labels = list(load_exemplars(settings.text.exemplars))
    members = [(p.with_name(m["adapter"]), full_head(m, h["speakers"], labels)) for p, h in zip(paths, heads) for m in h["members"]]

    def stored_member(encoder, texts, y, classes, adapter, log, seed=0):
        source, head = members[train.TRIGGER_SEEDS.index(seed)]
        shutil.copyfile(source, adapter)
        log(f"  member of seed {seed}: {source}")
        return head

    train.tune_encoder = stored_member
    train.TRIGGER_SEEDS = tuple(m["seed"] for h in heads for m in h["members"])
    train.train(settings.text, settings.models_dir, log=lambda line: print(line, flush=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main([Path(p) for p in sys.argv[1:]]))
