"""Probe: train the trigger ensemble from other seeds, to see how far a result moves by chance.

``python benchmarks/probes/other_seeds.py 3 4 5`` trains exactly as ``make train`` does (the same
inputs, from ``COACH_*`` settings) but with ``TRIGGER_SEEDS`` replaced by the seeds given. Point
``COACH_TEXT__TRIGGERS`` and ``COACH_TEXT__HEAD`` at a scratch folder: it writes heads like
``make train``'s, which ``benchmarks/replay_detectors.py`` and ``benchmarks/lines_bench.py`` then read
through the same settings. A probe, not a product path: the shipped heads come from ``TRIGGER_SEEDS``.
"""

from __future__ import annotations

import sys

from coach import train
from coach.cli import load_settings


def scratch_settings():
    """The settings, refused unless both heads are written away from the shipped ones."""
    settings = load_settings()
    shipped = type(settings.text)()
    if settings.text.triggers == shipped.triggers or settings.text.head == shipped.head:
        raise SystemExit("set COACH_TEXT__TRIGGERS and COACH_TEXT__HEAD to a scratch folder: a probe must not overwrite the shipped heads")
    return settings


def main(seeds: list[int]) -> int:
    if not seeds:
        raise SystemExit("usage: other_seeds.py SEED [SEED ...]")
    settings = scratch_settings()
    train.TRIGGER_SEEDS = tuple(seeds)
    train.train(settings.text, settings.models_dir, log=lambda line: print(line, flush=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main([int(s) for s in sys.argv[1:]]))
