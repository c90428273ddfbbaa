"""Where ``coach analyze`` writes events: JSON lines, or a readable live transcript."""

from __future__ import annotations

import json
import shutil
import sys
from typing import TextIO

from coach.events import Event, PromptEvent, SignalEvent, TranscriptEvent

LABELS = {"agent": "AGENT", "customer": "CUSTOMER", "mixed": "CALL"}


def clock(seconds: float) -> str:
    minutes, secs = divmod(max(0.0, seconds), 60)
    return f"{int(minutes):02d}:{secs:04.1f}"


class JsonlSink:
    """One JSON object per line, flushed as emitted (the contract of analysis-output.md)."""

    def __init__(self, out: TextIO | None = None) -> None:
        self.out = out or sys.stdout  # the stdout of now, not of import time

    def __call__(self, event: Event) -> None:
        self.out.write(json.dumps(event.to_dict(), ensure_ascii=False) + "\n")
        self.out.flush()

    def progress(self, consumed: float) -> None:
        pass

    def close(self) -> None:
        pass


class TranscriptView:
    """Final segments as lines with speaker labels; on a terminal, a footer with the words being
    heard right now and a progress bar, redrawn in place."""

    def __init__(self, out: TextIO = sys.stdout, duration: float | None = None, live: bool | None = None) -> None:
        self.out = out
        self.duration = duration
        self.live = out.isatty() if live is None else live
        self.consumed = 0.0
        self.interims: dict[str, str] = {}
        self._footer_lines = 0

    def __call__(self, event: Event) -> None:
        if isinstance(event, SignalEvent | PromptEvent):
            self._clear_footer()
            if isinstance(event, SignalEvent):
                self.out.write(f"{clock(event.at)}  {'!':9} {event.label.replace('_', ' ')}: {event.evidence}\n")
            else:
                label = "STOP" if event.kind == "stop_sign" else "PROMPT"
                self.out.write(f"{clock(event.at)}  {label:9} {event.title}: {event.text}\n")
            self._redraw()
            return
        if not isinstance(event, TranscriptEvent):
            return
        if not event.final:
            self.interims[event.speaker] = event.text
            self._redraw()
            return
        self.interims.pop(event.speaker, None)
        if event.text:
            self._clear_footer()
            self.out.write(f"{clock(event.start)}  {LABELS.get(event.speaker, event.speaker):9} {event.text}\n")
        self._redraw()

    def progress(self, consumed: float) -> None:
        self.consumed = consumed
        self._redraw()

    def close(self) -> None:
        self._clear_footer()
        self.out.flush()

    def _clear_footer(self) -> None:
        if self.live and self._footer_lines:
            # clear the line the cursor is on (the bar), then each interim line above it
            self.out.write("\r\x1b[2K" + "\x1b[1A\x1b[2K" * (self._footer_lines - 1))
            self._footer_lines = 0

    def _redraw(self) -> None:
        if not self.live:
            return
        self._clear_footer()
        width = shutil.get_terminal_size((100, 20)).columns
        lines = [
            f"{'':9}{LABELS.get(who, who):9} … {text}"[: width - 1] for who, text in sorted(self.interims.items())
        ]
        lines.append(self._bar(width))
        self.out.write("\n".join(lines))
        self.out.flush()
        self._footer_lines = len(lines)

    def _bar(self, width: int) -> str:
        if not self.duration:
            return f"analysed {clock(self.consumed)}"
        share = min(1.0, self.consumed / self.duration)
        cells = max(10, min(40, width - 30))
        filled = int(share * cells)
        return f"[{'#' * filled}{'.' * (cells - filled)}] {share:4.0%} {clock(self.consumed)} / {clock(self.duration)}"
