"""Detectors: what matters in a call, from timing and (later) words and sentiment."""
