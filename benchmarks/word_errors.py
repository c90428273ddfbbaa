"""Word error counting for the benchmarks: the words as the scorer compares them, and edit distance."""

from __future__ import annotations

import re


def words(text: str) -> list[str]:
    """Lower-case words without punctuation (hyphens split words, as the scorer splits them)."""
    return re.sub(r"[^a-z0-9' ]", " ", text.lower().replace("-", " ")).split()


def edit_distance(ref: list[str], hyp: list[str]) -> int:
    """Word substitutions, deletions and insertions that turn ``hyp`` into ``ref``."""
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, row[0] = row[:], i
        for j, h in enumerate(hyp, 1):
            row[j] = min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + (r != h))
    return row[-1]


def wer(ref: list[str], hyp: list[str]) -> float:
    return edit_distance(ref, hyp) / max(1, len(ref))
