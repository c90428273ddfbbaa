#!/usr/bin/env python3
"""Redaction recall on generated calls with spoken card, account and phone numbers (issue 7).

    python benchmarks/redaction_bench.py [--calls 20] [--seed 7] [--shared ../shared] [--out bench-out/redaction]

Each call is generated here from random numbers (Luhn-valid card numbers, account numbers, sort
codes, phone numbers, expiry dates and security codes) and a few ways people read them out
(digit by digit, in groups over several turns, with "double", as spaced digits), plus numbers that
must be kept (amounts, durations, dates). ``../shared/tools/synth_call.py`` speaks them (espeak-ng
and festival voices); ``coach analyze --store`` runs them through the real models and keeps them,
as a live call is kept.

Measured, per kind of personal data:
- in the raw transcript: how many the speech model heard recognisably (4 or more consecutive
  digits of the number appear), the denominator;
- in the store: how many can still be read from the kept events (transcripts and evidence);
- in the kept recording: how many can still be heard (the stored FLAC re-transcribed offline),
  against the original recording;
- numbers to keep: how many survive in the store (over-redaction).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import random
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from coach.redact import _digit_runs, luhn_valid  # noqa: E402

DIGIT_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
VOICES = [("festival:slt", "espeak:en-us+m3"), ("festival:kal", "espeak:en-gb+f2"), ("festival:slt", "espeak:en-us+f4"),
          ("espeak:en-gb+m4", "festival:kal")]


def luhn_card(rng: random.Random) -> str:
    prefix = rng.choice(["4", "51", "52", "53", "54", "55", "6011", "37"])
    length = 15 if prefix == "37" else 16
    body = prefix + "".join(str(rng.randrange(10)) for _ in range(length - len(prefix) - 1))
    return next(body + str(check) for check in range(10) if luhn_valid(body + str(check)))


def spoken(digits: str, style: str, rng: random.Random) -> str:
    """One way of reading a digit string aloud (as the synthesizer should say it)."""
    if style == "words":
        out, i = [], 0
        while i < len(digits):
            if i + 1 < len(digits) and digits[i] == digits[i + 1] and rng.random() < 0.5:
                out.append(f"double {DIGIT_WORDS[int(digits[i])]}")
                i += 2
            else:
                out.append("oh" if digits[i] == "0" and rng.random() < 0.3 else DIGIT_WORDS[int(digits[i])])
                i += 1
        return " ".join(out)
    return " ".join(digits)  # "4 5 3 9": the synthesizer says each digit


def groups(digits: str, size: int = 4) -> list[str]:
    return [digits[i : i + size] for i in range(0, len(digits), size)]


def make_call(index: int, rng: random.Random) -> tuple[dict, list[dict]]:
    """A call script and the personal data (and numbers to keep) said in it."""
    agent_voice, customer_voice = VOICES[index % len(VOICES)]
    card = luhn_card(rng)
    expiry = f"{rng.randrange(1, 13):02d}{rng.randrange(26, 32)}"
    cvv = "".join(str(rng.randrange(10)) for _ in range(4 if card.startswith("37") else 3))
    account = "".join(str(rng.randrange(10)) for _ in range(8))
    sort_code = "".join(str(rng.randrange(10)) for _ in range(6))
    phone = "07" + "".join(str(rng.randrange(10)) for _ in range(9))
    amount = rng.choice(["forty five dollars", "a hundred and twenty pounds", "sixty two dollars and fifty cents"])
    days = rng.choice(["three weeks", "ten days", "two months"])
    style = rng.choice(["words", "digits"])
    in_turns = rng.random() < 0.5  # the card read over several turns, the agent acknowledging each group
    ask_card = rng.choice([
        "To take the payment I'll need the long number across the front of your card.",
        "Could you read me the card number, please?",
        "Which card would you like to use? Go ahead with the number when you're ready.",
    ])
    turns = [
        {"speaker": "agent", "text": "Thanks for calling, you're through to billing. How can I help?"},
        {"speaker": "customer", "text": f"Hi, I was charged {amount} and I've been waiting {days} for it to be sorted."},
        {"speaker": "agent", "text": "I'm sorry about that. Let's settle the balance today. " + ask_card},
    ]
    if in_turns:
        for j, group in enumerate(groups(card)):
            turns.append({"speaker": "customer", "text": ("Sure, it's " if j == 0 else "") + spoken(group, style, rng) + "."})
            if j < len(groups(card)) - 1:
                turns.append({"speaker": "agent", "text": rng.choice(["OK.", "Yes.", "Got it.", "Mm-hm."])})
    else:
        turns.append({"speaker": "customer", "text": "Yes, it's " + ", ".join(spoken(g, style, rng) for g in groups(card)) + "."})
    turns += [
        {"speaker": "agent", "text": "And the expiry date?"},
        {"speaker": "customer", "text": spoken(expiry[:2], style, rng) + ", " + spoken(expiry[2:], style, rng) + "."},
        {"speaker": "agent", "text": "And the security code on the back?"},
        {"speaker": "customer", "text": spoken(cvv, style, rng) + "."},
        {"speaker": "agent", "text": "Thank you. For the refund, what's the account number and sort code?"},
        {"speaker": "customer", "text": f"Account {spoken(account, style, rng)}, sort code {', '.join(spoken(g, style, rng) for g in groups(sort_code, 2))}."},
        {"speaker": "agent", "text": "Lovely. And the best number to reach you on?"},
        {"speaker": "customer", "text": f"It's {spoken(phone[:5], style, rng)}, {spoken(phone[5:], style, rng)}."},
        {"speaker": "agent", "text": "Perfect, you'll get a text within the hour. Anything else?"},
        {"speaker": "customer", "text": "No, that's all, thanks."},
    ]
    script = {"id": f"pii-{index:02d}", "voices": {"agent": agent_voice, "customer": customer_voice},
              "turns": [{**t, "labels": []} for t in turns]}
    secrets = [{"kind": "card", "digits": card}, {"kind": "expiry", "digits": expiry}, {"kind": "security code", "digits": cvv},
               {"kind": "account", "digits": account}, {"kind": "sort code", "digits": sort_code}, {"kind": "phone", "digits": phone}]
    keep = [amount, days]
    return script, secrets + [{"kind": "keep", "text": k} for k in keep]


def digits_in(texts: list[str]) -> list[str]:
    return [run.digits for text in texts for run in _digit_runs(text)]


def readable(secret: str, runs: list[str]) -> bool:
    """Can the number be read from these digit runs: any 4 consecutive digits of it (all of it if shorter)?"""
    need = min(4, len(secret))
    pieces = {secret[i : i + need] for i in range(len(secret) - need + 1)}
    return any(piece in run for run in runs for piece in pieces)


def transcribe_channel(model, path: Path, channel: int) -> str:
    from coach.audio.files import read_blocks

    import numpy as np

    audio = np.concatenate(list(read_blocks(path)))
    segments, _ = model.transcribe(audio[:, min(channel, audio.shape[1] - 1)], language="en", beam_size=5, vad_filter=True)
    return " ".join(s.text for s in segments)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    parser.add_argument("--out", type=Path, default=ROOT / "bench-out" / "redaction")
    args = parser.parse_args()
    synth = args.shared / "tools" / "synth_call.py"
    if not synth.is_file():
        raise SystemExit(f"needs {synth} to speak the calls (../shared, or --shared)")
    rng = random.Random(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    calls = []
    for index in range(args.calls):
        script, said = make_call(index, rng)
        path = args.out / f"{script['id']}.json"
        path.write_text(json.dumps(script, indent=1))
        wav = args.out / f"{script['id']}.wav"
        if not wav.exists():
            subprocess.run([sys.executable, str(synth), str(path), str(args.out)], check=True, capture_output=True)
        calls.append((script["id"], wav, said))
        print(f"spoken {script['id']}", file=sys.stderr)

    from faster_whisper import WhisperModel

    from coach.cli import main as coach
    from coach.config import Settings
    from coach.models import resolve_speech_model
    from coach.store import open_store

    settings = Settings()
    offline = WhisperModel(resolve_speech_model(settings.asr.model, settings.models_dir).path, device="cpu", compute_type="int8", cpu_threads=2)
    tally: dict[str, Counter] = {}
    kept_numbers = Counter()
    leaks: list[str] = []
    with tempfile.TemporaryDirectory() as data_dir:
        for call_id, wav, said in calls:
            raw = io.StringIO()
            with contextlib.redirect_stdout(raw):
                coach(["analyze", str(wav), "--jsonl", "--store", "--data-dir", data_dir, "--call-id", call_id])
            raw_events = [json.loads(line) for line in raw.getvalue().splitlines() if line.strip()]
            store = open_store(Path(data_dir))
            stored = store.events(call_id)
            audio_path = store.audio_path(call_id)
            store.close()
            raw_runs = digits_in([e["text"] for e in raw_events if e["type"] == "transcript"])
            kept_texts = [e.get("text") or e.get("evidence") or "" for e in stored]
            kept_runs = digits_in(kept_texts)
            heard_original = digits_in([transcribe_channel(offline, wav, 1)])
            heard_kept = digits_in([transcribe_channel(offline, audio_path, 1)])
            # numbers to keep: the customer's complaint ("charged forty five dollars ... waiting ten days")
            complaint = [e for e in raw_events if e["type"] == "transcript" and e["final"] and "charged" in e["text"]]
            stored_by_id = {e["id"]: e["text"] for e in stored if e["type"] == "transcript" and e["final"]}
            for event in complaint:
                kept_numbers["said"] += 1
                kept_numbers["kept"] += stored_by_id.get(event["id"]) == event["text"]
            for item in said:
                if item["kind"] == "keep":
                    continue
                t = tally.setdefault(item["kind"], Counter())
                t["said"] += 1
                t["heard"] += readable(item["digits"], raw_runs)
                t["readable in store"] += readable(item["digits"], kept_runs)
                t["audible originally"] += readable(item["digits"], heard_original)
                t["audible in kept audio"] += readable(item["digits"], heard_kept)
                if readable(item["digits"], heard_kept) or readable(item["digits"], kept_runs):
                    leaks.append(f"{call_id} {item['kind']} {item['digits']}: kept audio heard as {heard_kept}")
            print(f"analysed {call_id}", file=sys.stderr)
    print(f"\n## Redaction on {args.calls} generated calls (seed {args.seed})\n")
    print("| data | said | heard in the raw transcript | readable in the store | recall | audible in the original | audible in the kept recording |")
    print("|---|---|---|---|---|---|---|")
    for kind, t in tally.items():
        recall = 1 - t["readable in store"] / t["heard"] if t["heard"] else float("nan")
        print(f"| {kind} | {t['said']} | {t['heard']} | {t['readable in store']} | {recall:.3f} | {t['audible originally']} | {t['audible in kept audio']} |")
    for leak in leaks:
        print("  leak:", leak)
    print(f"\nNumbers to keep: the customer's complaint with an amount and a duration was kept word for word in "
          f"{kept_numbers['kept']} of {kept_numbers['said']} calls.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
