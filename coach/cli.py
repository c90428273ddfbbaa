"""The ``coach`` command: ``analyze`` a recording, provision ``models``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path

from coach.config import Settings
from coach.errors import AudioInputError, CoachError

log = logging.getLogger("coach")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="coach", description="Real-time call coaching for contact centres.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what the coach is doing")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    analyze = commands.add_parser(
        "analyze", help="run a recorded call through the live pipeline", description="Run a recorded call "
        "through the same streaming pipeline as a live call and print its events."
    )
    analyze.add_argument("recording", type=Path, help="WAV, FLAC, MP3 or OGG; stereo = agent left, customer right")
    analyze.add_argument("--jsonl", action="store_true", help="print the event stream as JSON lines")
    analyze.add_argument("--agent-channel", type=int, choices=(0, 1), default=0, help="channel of the agent in a stereo file (default 0, left)")
    analyze.add_argument("--model", help="speech model: 'base' (offline default), a faster-whisper name, or a folder")
    analyze.add_argument("--no-interims", action="store_true", help="final segments only (less CPU)")
    analyze.add_argument("--store", action="store_true", help="keep the call (events and audio) in the store, for QA replay")
    analyze.add_argument("--data-dir", type=Path, help="the store's folder (default: as `coach serve`, ~/.local/share/coach)")
    analyze.add_argument("--call-id", help="id to keep the call under (default: the file's name)")
    analyze.add_argument("--agent-id", help="the agent on the call, for QA filters")

    playbook = commands.add_parser("playbook", help="check the playbook", description="Validate a playbook "
        "(default: COACH_PLAYBOOK, else models/playbook.yaml) and summarise it.")
    playbook_commands = playbook.add_subparsers(dest="playbook_command", required=True, metavar="ACTION")
    check = playbook_commands.add_parser("check", help="validate the playbook")
    check.add_argument("path", nargs="?", type=Path, help="playbook YAML (default: the configured one)")
    check.add_argument("--rules", action="store_true", help="also list every built-in rule id it may switch off, and whether it is on")

    models = commands.add_parser("models", help="provision and verify the speech model", description="Resolve the "
        "speech model (assembling and verifying the offline default if needed) and say where it is.")
    models.add_argument("--model", help="speech model: 'base' (offline default), a faster-whisper name, or a folder")

    serve = commands.add_parser("serve", help="run the live service", description="Take live call audio "
        "(/ws/twilio, /ws/audio) and push events to the agent sidebar and the lead board (/ws/calls/ID, /ws/board).")
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default 8000)")
    serve.add_argument("--data-dir", type=Path, help="where the server keeps its data (default ~/.local/share/coach)")
    serve.add_argument("--model", help="speech model: 'base' (offline default), a faster-whisper name, or a folder")
    serve.add_argument("--play", type=Path, metavar="RECORDING", help="also play this recording as a live call and print links to watch it")
    serve.add_argument("--agent-id", default="priya", help="the agent of the --play call (default priya)")

    simulate = commands.add_parser("simulate", help="play recordings into a running server as live calls",
        description="Stream recordings (agent left, customer right) into a running `coach serve` as live calls, "
        "paced in real time, several at once if asked.")
    simulate.add_argument("recordings", nargs="+", type=Path, metavar="RECORDING")
    simulate.add_argument("--server", default="http://127.0.0.1:8000", help="the server (default http://127.0.0.1:8000)")
    simulate.add_argument("--token", help="an ingest (or admin) token (default: COACH_TOKEN, else COACH_ADMIN_TOKEN)")
    simulate.add_argument("--via", choices=("twilio", "audiohook", "audio"), default="twilio",
                          help="Twilio Media Streams (8 kHz mu-law), Genesys AudioHook (the token is the X-API-KEY), or the generic PCM stream")
    simulate.add_argument("--speed", type=float, default=1.0, help="1.0 = real time; 2 twice as fast; 0 as fast as the server takes it")
    simulate.add_argument("--calls", type=int, default=1, help="how many calls to play at once (recordings are cycled)")
    simulate.add_argument("--stagger", type=float, default=2.0, help="seconds between call starts (default 2)")

    report = commands.add_parser("report", help="flag precision from QA reviews, prompts per call, calls by risk",
        description="Summarise the kept calls: each label's flags and the share QA marked right, prompts per call, "
        "calls by highest risk.")
    report.add_argument("--data-dir", type=Path, help="the store's folder (default: as `coach serve`)")
    report.add_argument("--since", help="only calls started on or after this date (YYYY-MM-DD)")
    report.add_argument("--json", action="store_true", help="print JSON")

    commands.add_parser("train", help="train the sentiment head and the trigger heads", description="Train "
        "models/heads/sentiment.json and models/heads/triggers.json from models/data/*.csv and "
        "models/exemplars.yaml (deterministic; `make train`).")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        settings = load_settings()
        if getattr(args, "model", None):
            settings.asr.model = args.model
        if args.command == "models":
            return run_models(settings)
        if args.command == "playbook":
            return run_playbook_check(args.path or settings.playbook, args.rules)
        if args.command == "train":
            return run_train(settings)
        if args.command == "serve":
            return asyncio.run(run_serve(args, settings))
        if args.command == "simulate":
            return asyncio.run(run_simulate(args, settings))
        if args.command == "report":
            return run_report(args, settings)
        return asyncio.run(run_analyze(args, settings))
    except CoachError as exc:
        print(f"coach: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("coach: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader stopped (`coach analyze x.wav --jsonl | head`): stop quietly, as other tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


def load_settings() -> Settings:
    """Settings from the environment; a bad value is a one-line error naming the variable."""
    from pydantic import ValidationError

    try:
        return Settings()
    except ValidationError as exc:
        first = exc.errors()[0]
        name = "COACH_" + "__".join(str(part).upper() for part in first["loc"])
        raise CoachError(f"invalid setting {name}: {first['msg']}") from None


def run_playbook_check(path: Path, rules: bool = False) -> int:
    from coach.playbook import built_in_rule_ids, load_playbook, retired_rule_ids

    book = load_playbook(path)
    for rule_id in book.switched_off:
        if (why := retired_rule_ids().get(rule_id)) is not None:
            print(f"{path}: note: switched_off {rule_id} was retired and does nothing now: {why}", file=sys.stderr)
    kinds = sorted({rule.kind for rule in book.prompts.values()})
    counts = ", ".join(f"{sum(r.kind == k for r in book.prompts.values())} {k}" for k in kinds)
    own = f", {len(book.signals)} signals of its own" if book.signals else ""
    off = f", {len(book.switched_off)} built-in rules switched off" if book.switched_off else ""
    print(f"{path}: OK, {len(book.prompts)} prompts ({counts}){own}{off}")
    if rules:
        for rule_id in built_in_rule_ids():
            print(f"  {'off' if rule_id in book.switched_off else 'on ':<4}{rule_id}")
    return 0


def run_models(settings: Settings) -> int:
    from coach.models import resolve_speech_model, resolve_text_model

    model = resolve_speech_model(settings.asr.model, settings.models_dir)
    print(f"speech model: {model.path} ({model.source}{', sha256 verified' if model.sha256 else ''})")
    if settings.text.enabled:
        text = resolve_text_model(settings.text.encoder, settings.models_dir)
        print(f"text encoder: {text.path} ({text.source})")
        if settings.text.sentiment not in ("head", "none"):
            sentiment = resolve_text_model(settings.text.sentiment, settings.models_dir)
            print(f"sentiment model: {sentiment.path} ({sentiment.source})")
    return 0


def run_train(settings: Settings) -> int:
    from coach.train import train

    try:
        train(settings.text, settings.models_dir, log=lambda line: print(line, flush=True))
    except (OSError, ValueError) as exc:
        raise CoachError(str(exc)) from None
    return 0


async def run_serve(args, settings: Settings) -> int:
    from coach.server.run import serve

    for name in ("host", "port", "data_dir"):
        if getattr(args, name) is not None:
            setattr(settings.server, name, getattr(args, name))
    return await serve(settings, args.play, args.agent_id)


async def run_simulate(args, settings: Settings) -> int:
    from coach.simulate import simulate

    token = args.token or os.environ.get("COACH_TOKEN") or (settings.admin_token.get_secret_value() if settings.admin_token else None)
    if not token:
        raise CoachError("simulate needs an ingest token: --token, COACH_TOKEN or COACH_ADMIN_TOKEN")
    if args.calls < 1 or args.speed < 0:
        raise CoachError("--calls must be at least 1 and --speed not negative")
    try:
        played = await simulate(args.server, args.recordings, token=token, via=args.via, speed=args.speed, calls=args.calls, stagger=args.stagger)
    except OSError as exc:
        raise CoachError(f"cannot reach the server at {args.server} ({exc.strerror or exc}): is `coach serve` running?") from None
    refused = [c for c in played if c.closed and c.closed[0] not in (1000, None)]
    return 1 if refused else 0


def run_report(args, settings: Settings) -> int:
    import json
    from datetime import datetime

    from coach.report import build_report, format_report

    since = None
    if args.since:
        try:
            since = datetime.fromisoformat(args.since).astimezone().timestamp()
        except ValueError:
            raise CoachError(f"--since wants a date like 2026-11-01, not {args.since!r}") from None
    store = _existing_store(args.data_dir or settings.server.data_dir, settings)
    try:
        report = build_report(store, since)
    finally:
        store.close()
    print(json.dumps(report.to_dict(), indent=1) if args.json else format_report(report))
    return 0


def _existing_store(data_dir: Path, settings: Settings):
    from coach.store import open_store

    database_url = _database_url(settings)
    if database_url is None and not (data_dir / "calls.db").is_file():
        raise CoachError(f"no calls kept in {data_dir} yet (run `coach serve`, or `coach analyze --store`); --data-dir to look elsewhere")
    return open_store(data_dir, database_url)


def _database_url(settings: Settings) -> str | None:
    """COACH_SERVER__DATABASE_URL: the calls are in PostgreSQL (the recordings still in the data dir)."""
    return settings.server.database_url.get_secret_value() if settings.server.database_url else None


async def run_analyze(args, settings: Settings) -> int:
    from coach.asr.scheduler import AsrScheduler
    from coach.audio.files import call_layout, probe
    from coach.models import load_models
    from coach.output import JsonlSink, TranscriptView
    from coach.pipeline import analyze_recording
    from coach.playbook import PromptPolicy, load_playbook
    from coach.redact import Redactor

    if args.no_interims:
        settings.asr.interims = False
    info = probe(args.recording)
    layout = call_layout(info, args.agent_channel)
    policy = PromptPolicy(load_playbook(settings.playbook))
    transcriber, text = await load_models(settings)
    scheduler = AsrScheduler(transcriber, settings.asr.worker_count)
    sink = JsonlSink() if args.jsonl else TranscriptView(duration=info.duration)
    finals = 0
    keeper = await _start_keeping(args, settings, info, layout) if args.store else None
    # what is kept is redacted, as a live call's is (the printed output is the caller's own)
    redactor = Redactor(settings.redaction.context_seconds) if keeper is not None and settings.redaction.enabled else None

    def emit(event) -> None:
        nonlocal finals
        finals += bool(getattr(event, "final", False) and getattr(event, "text", ""))
        sink(event)
        if keeper is not None:
            message, spans = redactor.event(event.to_dict()) if redactor is not None else (event.to_dict(), [])
            keeper.summary.take(message)
            keeper.event(message)
            if settings.redaction.silence_audio and message["type"] == "transcript" and redactor is not None:
                keeper.transcript(event.speaker, event.start, event.end, event.final, bool(spans), redactor.guarded_until(event.end))

    error = None
    try:
        consumed = await analyze_recording(
            args.recording, layout, scheduler, settings.asr, emit, sink.progress, policy=policy, text=text,
            on_audio=keeper.audio if keeper is not None else None,
        )
    except BaseException as exc:
        error = f"{type(exc).__name__}: {exc}"
        if keeper is not None and redactor is not None and settings.redaction.silence_audio:
            keeper.unread()  # redaction fails closed: what was never read is not kept
        raise
    finally:
        sink.close()
        scheduler.close()
        if text is not None:
            text.close()
        if keeper is not None:
            await keeper.end(error)
            keeper.executor.shutdown()
            keeper.store.close()
            print(f"kept as call {keeper.call_id} in {keeper.store.folder}", file=sys.stderr)
    if consumed == 0:
        raise AudioInputError(f"{args.recording} holds no audio samples")
    if info.duration and consumed < info.duration - 0.5:
        raise AudioInputError(
            f"{args.recording} is truncated: its header says {info.duration:.1f} s but only "
            f"{consumed:.1f} s could be decoded (the output covers that part)"
        )
    if finals == 0:
        raise AudioInputError(f"no speech found in {args.recording} ({consumed:.1f} s of silence or noise)")
    return 0


async def _start_keeping(args, settings: Settings, info, layout):
    """A recorder that writes the analysed call to the store as it goes, as a live call is kept."""
    import time
    from concurrent.futures import ThreadPoolExecutor

    from coach.server.recorder import CallRecorder
    from coach.server.summary import CallSummary
    from coach.store import CallExistsInStore, CallRecord, open_store

    data_dir = args.data_dir or settings.server.data_dir
    call_id = args.call_id or args.recording.stem
    store = await asyncio.to_thread(open_store, data_dir, _database_url(settings))
    # the call's date is the recording's: when the file was written, less its length
    started = args.recording.stat().st_mtime - (info.duration or 0.0)
    record = CallRecord(call_id, args.agent_id, "recording", "live", started if started > 0 else time.time(), channels=layout.recorded_channels)
    try:
        await asyncio.to_thread(store.begin, record)
    except CallExistsInStore:
        store.close()
        raise CoachError(f"a call {call_id} is already kept in {data_dir}; pass --call-id to keep this one under another id") from None
    recorder = CallRecorder(store, ThreadPoolExecutor(1, thread_name_prefix="store"), record, layout,
                            CallSummary(call_id, args.agent_id, record.started_at))
    recorder.start()
    return recorder


if __name__ == "__main__":
    sys.exit(main())
