"""Settings, read from the environment (prefix ``COACH_``) when a command or the app starts.

Nested groups use ``__``: ``COACH_ASR__BEAM_SIZE=1``. Nothing is read at import time: callers
build ``Settings()`` themselves (the CLI per command, the server in ``create_app()``).
"""

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from coach import defaults


def _default_models_dir() -> Path:
    return Path.home() / ".cache" / "coach" / "models"


class AsrSettings(BaseModel):
    """Speech-to-text: the model, how it is run, and how speech is cut into utterances."""

    model: str = Field("base", description="'base' (offline default), a faster-whisper model name, or a path")
    compute_type: str = "int8"
    cpu_threads: int = Field(1, ge=0, description="threads per model call (1 is the most CPU-efficient); 0 = all cores")
    workers: int = Field(0, ge=0, description="model calls that may run at once; 0 = one per core")
    language: str = "en"
    beam_size: int = Field(5, ge=1, description="beam for final segments")
    interim_beam_size: int = Field(1, ge=1, description="beam for interim hypotheses")
    context: Literal["call", "party", "none"] = Field(
        "call", description="prompt finals with the call's last words (both parties), the party's own, or nothing"
    )
    context_words: int = Field(40, ge=0, le=150, description="how many of the last words to prompt with")
    interims: bool = True
    final_mode: Literal["redecode", "join"] = Field(
        "redecode", description="final = a fresh decode of the whole utterance, or its chunks joined (cheaper, less accurate)"
    )
    window_margin: float = Field(4.0, description="silence (s) after the speech in the encoder window; <0: 30 s")
    min_window: float = Field(10.0, ge=1, le=30, description="the shortest encoder window (s)")
    chunk_margin: float = Field(2.0, description="the same for chunks of an utterance")
    chunk_pause: float = Field(0.15, gt=0, description="the pause (s) that may end a chunk")
    min_chunk: float = Field(3.0, gt=0, description="a chunk ends at a pause once this long (s)")
    max_chunk: float = Field(6.0, gt=0, description="a chunk without a pause is cut here (s)")
    vad_threshold: float = Field(0.5, gt=0, lt=1)
    min_speech: float = Field(0.25, ge=0, description="speech (s) needed to open an utterance")
    min_silence: float = Field(0.7, gt=0, description="silence (s) that ends an utterance")
    early_pause: float = Field(
        0.4, ge=0, description="silence (s) after which the utterance so far is decoded as its final, to be "
        "read for triggers at once and kept as the final if the party says no more; 0 = wait for min_silence"
    )
    speech_pad: float = Field(0.4, ge=0, description="audio (s) kept either side of the speech")
    max_utterance: float = Field(28.0, gt=1, description="an utterance is cut at the next pause after this long")
    hard_max_utterance: float = Field(29.0, gt=1, description="an utterance is cut here even without a pause")

    @model_validator(mode="after")
    def _fits_the_window(self) -> "AsrSettings":
        if self.hard_max_utterance + 2 * self.speech_pad > 30:
            raise ValueError("hard_max_utterance plus the speech pad on both sides must fit Whisper's 30 s window")
        if self.max_utterance > self.hard_max_utterance:
            raise ValueError("max_utterance must not exceed hard_max_utterance")
        return self


    @property
    def worker_count(self) -> int:
        return self.workers or os.cpu_count() or 1


class TextSettings(BaseModel):
    """The text models: per-segment sentiment and trigger similarity."""

    enabled: bool = Field(True, description="false: phrase rules only, no sentiment (no text model loaded)")
    encoder: str = Field("minilm", description="'minilm' (offline default), or a transformers encoder name or folder")
    sentiment: str = Field(
        "head", description="'head' (the project's trained head on the encoder), 'none', or any Hugging Face "
        "sequence-classification model name or folder"
    )
    head: Path = Field(default_factory=lambda: defaults.SENTIMENT_HEAD)
    mood_carry: float = Field(0.5, ge=0, lt=1, description="how much of a party's mood so far carries into a segment's sentiment")
    similarity: bool = Field(True, description="trigger detection by meaning (exemplars), beside the phrase rules")
    exemplars: Path = Field(default_factory=lambda: defaults.EXEMPLARS)
    triggers: Path = Field(default_factory=lambda: defaults.TRIGGER_HEADS, description="the trigger heads `make train` writes")
    utterances: list[Path] = Field(
        default_factory=lambda: list(defaults.UTTERANCES), description="labelled call lines (CSV speaker,mood,text) `make train` learns from"
    )
    calibration: list[Path] = Field(
        default_factory=lambda: list(defaults.CALIBRATION),
        description="labelled single call lines (JSON lines) `make train` sets the trigger thresholds on",
    )
    training_lines: list[Path] = Field(
        default_factory=lambda: list(defaults.TRAINING_LINES),
        description="labelled call lines (JSON lines) whose lines of `training_labels` the trigger adapters learn from beside the exemplars (`none`: the lines of no label, as `none`)",
    )
    training_labels: list[str] = Field(
        default_factory=lambda: [*defaults.TRIGGER_LABELS, "none"],
        description="the labels `training_lines` teach (default: every trigger label, and `none`)",
    )
    threads: int = Field(1, ge=1)


class RedactionSettings(BaseModel):
    """Personal data (card, ID and account numbers, e-mail addresses, phone numbers) out of what is
    stored and what team leads and QA see."""

    enabled: bool = Field(True, description="redact transcripts and signal evidence before they are stored or sent")
    agent_view: Literal["redacted", "raw"] = Field(
        "redacted", description="'raw': the agent's own live view keeps the words (never stored; leads and QA still get them redacted)"
    )
    silence_audio: bool = Field(True, description="silence the stored recording where personal data was said")
    context_seconds: float = Field(30.0, ge=0, description="after a card, account, ID or phone is mentioned, shorter digit runs are redacted for this long (s)")


def _default_data_dir() -> Path:
    return Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "coach"


class ServerSettings(BaseModel):
    """``coach serve``: where it listens, where it keeps its data, and its limits."""

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    data_dir: Path = Field(default_factory=_default_data_dir, description="recordings, events and tokens")
    max_message_bytes: int = Field(256 * 1024, ge=1024, description="the largest websocket frame accepted")
    send_timeout: float = Field(5.0, gt=0, description="a reader whose sends stall this long (s) is dropped")
    reader_limit: int = Field(1000, ge=10, description="messages a reader may fall behind before it is dropped")
    keep_ended: int = Field(200, ge=0, description="ended calls kept in memory for late readers")
    max_calls: int | None = Field(None, ge=0, description="live calls at most; a new one is refused (1013, try again later) beyond; "
                                  "default: 5 per CPU core (10 on two cores); 0 = no limit")
    refuse_lag: float = Field(5.0, gt=0, description="while the speech model's most overdue final has waited this long (s), new calls are refused (1013): "
                                                    "the node's own backlog, which a sender faster than real time does not move")
    shed_interims_after: float = Field(1.0, gt=0, description="under load, an interim that waited this long (s) for the model is dropped (finals never are)")
    max_batch: int = Field(8, ge=1, description="jobs of different calls (or parties) waiting for the model are decoded together, up to this many in one batch; 1 = never")
    ladder_top: int = Field(4, ge=0, le=4, description="the highest rung of the quality ladder live calls take as finals wait for the model "
                            "(1 fewer interims, 2 greedy finals, 3 lone finals held briefly to batch, 4 long finals in pieces); 0 = never give up quality")
    ladder_climb_at: float = Field(0.5, gt=0, description="a final waiting this long (s) for the speech model takes the next rung of the ladder")
    retention_days: float = Field(0, ge=0, description="delete stored calls (events, audio, reviews) after this many days; 0 = keep")
    allowed_origins: list[str] = Field(
        default_factory=list, description="web origins (https://host:port) whose pages may open websockets, besides this server's own; '*' = any"
    )
    connections_per_minute: int = Field(600, ge=0, description="websocket connections and API requests from one client address in any minute; 0 = no limit")
    max_calls_per_token: int | None = Field(None, ge=0, description="live calls one ingest token may stream at once (4429 beyond); "
                                            "default: max_calls; 0 = no limit")
    stream_idle_timeout: float = Field(30.0, gt=0, description="a call stream that sends nothing for this long (s) is ended, keeping what it sent")
    public_url: str | None = Field(None, description="the server's URL as Twilio calls it (wss://host), for checking X-Twilio-Signature behind a proxy")
    database_url: SecretStr | None = Field(
        None, description="postgresql://user:password@host:port/db: keep calls, events, QA reviews and tokens in PostgreSQL "
        "(shared by the nodes of a cluster) instead of SQLite in data_dir; recordings stay in data_dir")
    redis_url: SecretStr | None = Field(
        None, description="redis://host:port/db: join the cluster of every node with this Redis and database_url: any node "
        "serves any call's events and the whole floor's board (needs database_url, and data_dir on storage every node shares)")
    node_id: str | None = Field(None, min_length=1, max_length=100, pattern=r"^[A-Za-z0-9._:-]+$",
                                description="this node's name in the cluster; default: its host name and process id")
    heartbeat: float = Field(1.5, gt=0, le=30, description="how often (s) a node says it is alive in the cluster")
    node_timeout: float = Field(6.0, gt=0, le=120, description="a node silent this long (s), and two beats more, is dead: its live calls are sealed as interrupted")

    @model_validator(mode="after")
    def _cluster_needs_a_shared_database(self) -> "ServerSettings":
        if self.redis_url is not None and self.database_url is None:
            raise ValueError("redis_url (cluster mode) needs database_url: the nodes must share one PostgreSQL database")
        if self.node_timeout <= self.heartbeat:
            raise ValueError("node_timeout must be longer than heartbeat")
        return self


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="COACH_", env_nested_delimiter="__", extra="ignore")

    admin_token: SecretStr | None = Field(None, description="COACH_ADMIN_TOKEN: the admin's bearer token")
    twilio_auth_token: SecretStr | None = Field(None, description="COACH_TWILIO_AUTH_TOKEN: verify Twilio streams by X-Twilio-Signature")
    audiohook_api_key: SecretStr | None = Field(
        None, description="COACH_AUDIOHOOK_API_KEY: the API key of the Genesys AudioHook integration, let in on /ws/audiohook "
        "(besides any ingest token used as the key)")
    audiohook_client_secret: SecretStr | None = Field(
        None, description="COACH_AUDIOHOOK_CLIENT_SECRET: the integration's client secret (base64); when set, every "
        "AudioHook session must be signed with it (HTTP message signature)")

    @field_validator("audiohook_client_secret")
    @classmethod
    def _base64_secret(cls, value: SecretStr | None) -> SecretStr | None:
        import base64
        import binascii

        if value is not None:
            try:
                base64.b64decode(value.get_secret_value(), validate=True)
            except (binascii.Error, ValueError):
                raise ValueError("the AudioHook client secret must be base64, as Genesys shows it") from None
        return value
    server: ServerSettings = Field(default_factory=ServerSettings)
    models_dir: Path = Field(default_factory=_default_models_dir)
    playbook: Path = Field(default_factory=lambda: defaults.PLAYBOOK)
    asr: AsrSettings = AsrSettings()
    text: TextSettings = TextSettings()
    redaction: RedactionSettings = RedactionSettings()


def default_max_calls() -> int:
    """Live calls a node takes by default: 5 per CPU core it may use."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return 5 * max(1, cores)
