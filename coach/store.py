"""Every call kept: its metadata, every event, the recording, and QA's reviews (issue 5).

:class:`CallStore` is the interface the server, ``coach analyze --store`` and ``coach report`` use.
:class:`SqlCallStore` implements it in portable SQL over a DB-API connection (plain types, ``?``
parameters translated to the driver's style, no vendor extensions); the embedded default is SQLite in
``DATA_DIR/calls.db``, so a real database server can take its place later.

Written as the call goes: events and the call's summary are committed every ``flush_seconds``,
the audio (16-bit PCM, agent left and customer right, 16 kHz) appended to ``recordings/ID.pcm``
at the same pace. A crash loses at most that much. When the call ends the PCM becomes FLAC
(lossless, seekable by the browser's player); after a crash, :meth:`SqlCallStore.recover` does the
same for every call left ``live`` and marks it ``interrupted``.

Blocking: every method does file or database work. The server calls them from the store's own
single-thread executor (:class:`CallRecorder` does), never from the event loop.
"""

from __future__ import annotations

import hashlib
import json
import os
import logging
import re
import sqlite3
import threading
import time
from collections.abc import Iterable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from coach.audio.frames import SAMPLE_RATE
from coach.errors import CoachError

log = logging.getLogger("coach.store")

# Versioned migrations, applied in order and recorded in ``schema_version``: migration N brings
# a database from version N-1 to N. Never edit one that has shipped; add the next.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (  # 1: calls, their events, QA's reviews
        """CREATE TABLE IF NOT EXISTS calls (
            call_id VARCHAR(200) PRIMARY KEY,
            agent_id VARCHAR(200),
            source VARCHAR(20) NOT NULL,
            state VARCHAR(20) NOT NULL,
            started_at DOUBLE PRECISION NOT NULL,
            ended_at DOUBLE PRECISION,
            duration DOUBLE PRECISION NOT NULL,
            risk INTEGER NOT NULL,
            max_risk INTEGER NOT NULL,
            flagged INTEGER NOT NULL,
            labels VARCHAR(2000) NOT NULL,
            prompts INTEGER NOT NULL,
            channels INTEGER NOT NULL,
            audio VARCHAR(500),
            error VARCHAR(2000)
        )""",
        "CREATE INDEX IF NOT EXISTS calls_started ON calls (started_at)",
        """CREATE TABLE IF NOT EXISTS events (
            call_id VARCHAR(200) NOT NULL,
            seq INTEGER NOT NULL,
            type VARCHAR(40) NOT NULL,
            at DOUBLE PRECISION NOT NULL,
            body TEXT NOT NULL,
            PRIMARY KEY (call_id, seq)
        )""",
        """CREATE TABLE IF NOT EXISTS reviews (
            review_id VARCHAR(40) PRIMARY KEY,
            call_id VARCHAR(200) NOT NULL,
            seq INTEGER NOT NULL,
            label VARCHAR(100) NOT NULL,
            verdict VARCHAR(10) NOT NULL,
            note TEXT,
            reviewer VARCHAR(200) NOT NULL,
            reviewed_at DOUBLE PRECISION NOT NULL
        )""",
        "CREATE INDEX IF NOT EXISTS reviews_call ON reviews (call_id)",
    ),
    (  # 2: the node a live call streams to (cluster mode: another node interrupts it if that node dies)
        "ALTER TABLE calls ADD COLUMN node VARCHAR(100)",
        "CREATE INDEX calls_state ON calls (state)",
    ),
    (  # 3: bearer tokens, for a database shared by several nodes (one node keeps them in tokens.json)
        """CREATE TABLE tokens (
            id VARCHAR(40) PRIMARY KEY,
            hash VARCHAR(64) NOT NULL UNIQUE,
            role VARCHAR(20) NOT NULL,
            agent_id VARCHAR(200),
            name VARCHAR(200),
            created DOUBLE PRECISION NOT NULL,
            expires DOUBLE PRECISION,
            revoked INTEGER NOT NULL
        )""",
    ),
)
MIGRATION_LOCK = 72631  # PostgreSQL advisory lock held while a node migrates (nodes may start together)

CALL_COLUMNS = ("call_id", "agent_id", "source", "state", "started_at", "ended_at", "duration", "risk", "max_risk",
                "flagged", "labels", "prompts", "channels", "audio", "error", "node")
TOKEN_COLUMNS = ("id", "hash", "role", "agent_id", "name", "created", "expires", "revoked")
SAFE_ID = re.compile(r"[^A-Za-z0-9._-]")


class CallExistsInStore(Exception):
    """A call with this id is already stored (``state``: its state, ``node``: where it streams if live)."""

    def __init__(self, call_id: str, state: str | None = None, node: str | None = None) -> None:
        super().__init__(call_id)
        self.state, self.node = state, node


class StoreError(CoachError):
    """The database cannot be reached or used: one line that says why."""


@dataclass
class CallRecord:
    """A stored call's metadata (the ``calls`` row)."""

    call_id: str
    agent_id: str | None
    source: str  # "live" (through the server) or "recording" (``coach analyze --store``)
    state: str  # "live", "ended" or "interrupted" (the server stopped without ending it)
    started_at: float
    ended_at: float | None = None
    duration: float = 0.0  # seconds of call audio kept
    risk: int = 0
    max_risk: int = 0
    flagged: bool = False
    labels: list[str] = field(default_factory=list)  # every signal label seen, in order of first appearance
    prompts: int = 0
    channels: int = 2
    audio: str | None = None  # the recording, relative to the store's folder
    error: str | None = None
    node: str | None = None  # the node a live call streams to (None: a single node)

    def public(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in CALL_COLUMNS if k != "audio"}
        out["has_audio"] = self.audio is not None and self.audio.endswith(".flac")
        return out


@dataclass(frozen=True)
class Silence:
    """A stretch of one channel of a recording to silence (personal data was said there)."""

    channel: int  # 0: agent (or the one mixed channel), 1: customer
    start: float  # seconds into the call
    end: float


@dataclass(frozen=True)
class Review:
    review_id: str
    call_id: str
    seq: int  # the flagged event (its place in the call's events)
    label: str
    verdict: str  # "right" or "wrong"
    note: str | None
    reviewer: str
    reviewed_at: float


@dataclass(frozen=True)
class CallQuery:
    flagged: bool | None = None
    label: str | None = None
    agent_id: str | None = None
    state: str | None = None
    since: float | None = None  # started at or after (Unix seconds)
    until: float | None = None  # started before
    min_risk: int | None = None  # the call's highest risk
    limit: int = 100
    offset: int = 0


class CallStore(Protocol):
    """What the coach keeps. Every method blocks; call from a worker thread."""

    folder: Path

    def begin(self, record: CallRecord) -> None: ...
    def append(
        self, call_id: str, events: list[dict[str, Any]], audio: np.ndarray | None, summary: dict[str, Any],
        silence: Iterable[Silence] = (),
    ) -> None: ...
    def end(self, call_id: str, summary: dict[str, Any], state: str = "ended", error: str | None = None) -> None: ...
    def call(self, call_id: str) -> CallRecord | None: ...
    def calls(self, query: CallQuery) -> list[CallRecord]: ...
    def events(self, call_id: str) -> list[dict[str, Any]]: ...
    def events_of_type(self, kind: str, since: float | None = None) -> list[tuple[str, dict[str, Any]]]: ...
    def audio_path(self, call_id: str) -> Path | None: ...
    def add_review(self, review: Review) -> None: ...
    def reviews(self, call_id: str | None = None) -> list[Review]: ...
    def recover(self) -> list[str]: ...
    def live_calls(self) -> list[tuple[str, str | None]]: ...
    def interrupt(self, call_id: str, why: str, node: str | None = None, seal: bool = True) -> CallRecord | None: ...
    def seal(self, call_id: str) -> None: ...
    def purge(self, older_than: float) -> int: ...
    def close(self) -> None: ...


class SqlCallStore:
    """The store in portable SQL. ``connect`` returns a DB-API connection (SQLite's by default) and
    ``paramstyle`` is its driver's; or ``pool``, a psycopg pool of PostgreSQL connections (several
    nodes share that database: each call is written by the node that streams it)."""

    def __init__(self, folder: Path, connect=None, paramstyle: str = "qmark", pool=None) -> None:
        self.folder = Path(folder)
        self.recordings = self.folder / "recordings"
        # calls are personal data: the folder, the database and every recording are the server's own
        # (0700 folders, 0600 files), whatever the process umask
        for private in (self.folder, self.recordings):
            private.mkdir(mode=0o700, parents=True, exist_ok=True)
            _make_private(private, 0o700)
        self._pool = pool
        self._style = "format" if pool is not None else paramstyle
        self._db = None if pool is not None else (connect or (lambda: _sqlite(_private_file(self.folder / "calls.db"))))()
        self._lock = threading.Lock()  # one connection (or one borrowed from the pool), used from one thread at a time
        self._next_seq: dict[str, int] = {}
        self._pcm: dict[str, Any] = {}  # open recordings of live calls
        self._written: dict[str, dict[str, Any]] = {}  # live calls: the summary last written
        self._migrate()

    @property
    def shared(self) -> bool:
        """Whether other nodes may use this database too (PostgreSQL)."""
        return self._pool is not None

    @contextmanager
    def _session(self):
        """The connection for one unit of work, held by this thread alone (a pool's is given back after)."""
        with self._lock:
            if self._pool is None:
                yield
                return
            with self._pool.connection() as conn:  # committed when the block ends well, rolled back if not
                self._db = conn
                try:
                    yield
                finally:
                    self._db = None

    def _migrate(self) -> None:
        """Bring the schema to this version of coach, one numbered migration at a time."""
        with self._session():
            cur = self._db.cursor()
            if self._pool is not None:  # nodes starting together migrate one after another
                cur.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
            cur.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = self._one("SELECT MAX(version) FROM schema_version")
            version = int(row[0] or 0) if row else 0
            if version > len(MIGRATIONS):
                raise StoreError(f"the database's schema is version {version}, newer than this coach knows ({len(MIGRATIONS)}): "
                                 "upgrade coach on this node")
            if self._pool is None:
                self._db.commit()  # (on PostgreSQL the advisory lock is held to the end of the one transaction)
            for number, statements in enumerate(MIGRATIONS[version:], version + 1):
                if self._pool is None:
                    cur.execute("BEGIN")  # SQLite: a migration and its version are one transaction, DDL included
                for statement in statements:
                    cur.execute(statement)
                self._exec("INSERT INTO schema_version (version) VALUES (?)", (number,))
                if version:
                    log.info("database schema migrated to version %d", number)
                if self._pool is None:
                    self._db.commit()
            self._db.commit()

    # ---- writing a call ----
    def begin(self, record: CallRecord) -> None:
        with self._session():
            found = self._one("SELECT state, node FROM calls WHERE call_id = ?", (record.call_id,))
            if found is not None:
                raise CallExistsInStore(record.call_id, *found)
            record.audio = f"recordings/{_file_name(record.call_id)}.pcm"
            try:
                self._exec(f"INSERT INTO calls ({', '.join(CALL_COLUMNS)}) VALUES ({', '.join('?' * len(CALL_COLUMNS))})",
                           _row(record))
                self._db.commit()
            except Exception as exc:  # another node took this id between the look and the insert
                if "IntegrityError" not in {cls.__name__ for cls in type(exc).__mro__}:
                    raise
                self._db.rollback()
                raise CallExistsInStore(record.call_id, "live") from None
            self._next_seq[record.call_id] = 0
            self._pcm[record.call_id] = open(_private_file(self.folder / record.audio), "ab", buffering=0)  # noqa: SIM115

    def append(
        self, call_id: str, events: list[dict[str, Any]], audio: np.ndarray | None, summary: dict[str, Any],
        silence: Iterable[Silence] = (),
    ) -> None:
        """Events (in order), audio (``(samples, channels)`` float32 at 16 kHz) and the call's latest
        summary; then ``silence``: stretches of the recording so far to overwrite with silence. The
        database is written only when there are events or the summary changed (its duration, every
        ``DURATION_STEP`` s): most flushes carry audio alone, and a floor of calls flushes often."""
        silence = list(silence)
        with self._lock:
            if audio is not None and audio.size and call_id in self._pcm:
                self._pcm[call_id].write(pcm16(audio))
            last = self._written.get(call_id)
            if not events and not silence and last is not None and _same_summary(last, summary):
                return
        with self._session():
            for stretch in silence:
                self._silence(call_id, stretch)
            seq = self._next_seq.get(call_id)
            if seq is None:
                seq = self._next_seq[call_id] = self._max_seq(call_id) + 1
            rows = []
            for event in events:
                rows.append((call_id, seq, str(event.get("type", "")), float(event.get("at", 0.0)), json.dumps(event)))
                seq += 1
            if rows:
                self._db.cursor().executemany(self._sql("INSERT INTO events (call_id, seq, type, at, body) VALUES (?, ?, ?, ?, ?)"), rows)
            self._update(call_id, summary)
            self._db.commit()
            self._next_seq[call_id] = seq
            if call_id in self._pcm:
                self._written[call_id] = dict(summary)

    def end(self, call_id: str, summary: dict[str, Any], state: str = "ended", error: str | None = None) -> None:
        """The call is over: its recording becomes FLAC and its row final (the encoding holds no
        lock and no transaction: token checks and other writes go on meanwhile)."""
        with self._lock:
            pcm = self._pcm.pop(call_id, None)
            if pcm is not None:
                pcm.close()
            self._next_seq.pop(call_id, None)
            self._written.pop(call_id, None)
        with self._session():
            record = self._record(call_id)
        if record is None:
            return
        audio, seconds = self._seal_recording(record)
        with self._session():
            self._update(call_id, {**summary, "state": state, "ended_at": summary.get("ended_at") or time.time(),
                                   "error": error, "audio": audio, "duration": max(seconds, float(summary.get("duration", 0.0)))})
            self._db.commit()

    # ---- reading ----
    def call(self, call_id: str) -> CallRecord | None:
        with self._session():
            return self._record(call_id)

    def calls(self, query: CallQuery = CallQuery()) -> list[CallRecord]:
        where, params = [], []
        for column, value in (("agent_id", query.agent_id), ("state", query.state)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        if query.flagged is not None:
            where.append("flagged = ?")
            params.append(int(query.flagged))
        if query.since is not None:
            where.append("started_at >= ?")
            params.append(query.since)
        if query.until is not None:
            where.append("started_at < ?")
            params.append(query.until)
        if query.min_risk is not None:
            where.append("max_risk >= ?")
            params.append(query.min_risk)
        if query.label is not None:  # labels are stored ",a,b,": the label with its commas is a whole label
            where.append("labels LIKE ?")
            params.append(f"%,{query.label},%")
        sql = f"SELECT {', '.join(CALL_COLUMNS)} FROM calls"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY started_at DESC LIMIT ? OFFSET ?"
        params += [query.limit, query.offset]
        with self._session():
            return [_record(row) for row in self._all(sql, tuple(params))]

    def events(self, call_id: str) -> list[dict[str, Any]]:
        with self._session():
            rows = self._all("SELECT seq, body FROM events WHERE call_id = ? ORDER BY seq", (call_id,))
        return [{**json.loads(body), "seq": seq} for seq, body in rows]

    def events_of_type(self, kind: str, since: float | None = None) -> list[tuple[str, dict[str, Any]]]:
        """``(call_id, event)`` for every event of one type, of calls started at or after ``since``."""
        sql = "SELECT e.call_id, e.seq, e.body FROM events e JOIN calls c ON c.call_id = e.call_id WHERE e.type = ?"
        params: tuple = (kind,)
        if since is not None:
            sql, params = sql + " AND c.started_at >= ?", (kind, since)
        with self._session():
            rows = self._all(sql + " ORDER BY e.call_id, e.seq", params)
        return [(call_id, {**json.loads(body), "seq": seq}) for call_id, seq, body in rows]

    def audio_path(self, call_id: str) -> Path | None:
        """The sealed recording (FLAC), or None while the call is live or when none was kept."""
        record = self.call(call_id)
        if record is None or record.audio is None or not record.audio.endswith(".flac"):
            return None
        path = self.folder / record.audio
        return path if path.is_file() else None

    # ---- QA ----
    def add_review(self, review: Review) -> None:
        with self._session():
            self._exec(
                "INSERT INTO reviews (review_id, call_id, seq, label, verdict, note, reviewer, reviewed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (review.review_id, review.call_id, review.seq, review.label, review.verdict, review.note, review.reviewer, review.reviewed_at),
            )
            self._db.commit()

    def reviews(self, call_id: str | None = None) -> list[Review]:
        sql = "SELECT review_id, call_id, seq, label, verdict, note, reviewer, reviewed_at FROM reviews"
        params: tuple = ()
        if call_id is not None:
            sql, params = sql + " WHERE call_id = ?", (call_id,)
        with self._session():
            return [Review(*row) for row in self._all(sql + " ORDER BY reviewed_at", params)]

    # ---- tokens (a shared database: see coach.server.auth) ----
    @contextmanager
    def _token_query(self):
        """A cursor for one token query: on PostgreSQL a pooled connection of its own, so that
        token checks never wait behind the calls' writes."""
        if self._pool is None:
            with self._lock:
                yield self._db.cursor()
                self._db.commit()
            return
        with self._pool.connection() as conn:
            yield conn.cursor()

    def add_token(self, row: dict) -> None:
        with self._token_query() as cur:
            cur.execute(self._sql(f"INSERT INTO tokens ({', '.join(TOKEN_COLUMNS)}) VALUES ({', '.join('?' * len(TOKEN_COLUMNS))})"),
                        tuple(int(row[c]) if c == "revoked" else row[c] for c in TOKEN_COLUMNS))

    def token_by_hash(self, digest: str) -> dict | None:
        with self._token_query() as cur:
            cur.execute(self._sql(f"SELECT {', '.join(TOKEN_COLUMNS)} FROM tokens WHERE hash = ?"), (digest,))
            row = cur.fetchone()
        return None if row is None else _token(row)

    def revoke_token(self, token_id: str) -> bool:
        with self._token_query() as cur:
            cur.execute(self._sql("UPDATE tokens SET revoked = 1 WHERE id = ?"), (token_id,))
            return cur.rowcount == 1

    def tokens(self) -> list[dict]:
        with self._token_query() as cur:
            cur.execute(self._sql(f"SELECT {', '.join(TOKEN_COLUMNS)} FROM tokens ORDER BY created"))
            return [_token(row) for row in cur.fetchall()]

    # ---- upkeep ----
    def recover(self) -> list[str]:
        """After a crash: every call still marked live by a node with no name (one node, not a
        cluster) and not open here is sealed with what was written, as ``interrupted``. In a
        cluster, the nodes seal each other's calls (:meth:`interrupt`)."""
        stale = [call_id for call_id, node in self.live_calls() if node is None and call_id not in self._pcm]
        for call_id in stale:
            self.interrupt(call_id, "the server stopped during the call; kept up to that moment")
        return stale

    def live_calls(self) -> list[tuple[str, str | None]]:
        """``(call_id, node)`` of every call marked live, on any node."""
        with self._session():
            return [(row[0], row[1]) for row in self._all("SELECT call_id, node FROM calls WHERE state = ?", ("live",))]

    def interrupt(self, call_id: str, why: str, node: str | None = None, seal: bool = True) -> CallRecord | None:
        """Mark a call ``interrupted`` that its node can no longer end, if it is still live and
        streamed by ``node``: the record if this did it, else None. Then its recording is sealed
        (``seal=False``: the caller calls :meth:`seal` later, so that many calls are marked at once)."""
        with self._session():
            where = "node IS NULL" if node is None else "node = ?"
            params = (why, time.time(), call_id, "live") + (() if node is None else (node,))
            cur = self._db.cursor()
            cur.execute(self._sql(f"UPDATE calls SET state = 'interrupted', error = ?, ended_at = ? WHERE call_id = ? AND state = ? AND {where}"),
                        params)
            changed = cur.rowcount == 1
            self._db.commit()
            record = self._record(call_id) if changed else None
        if record is not None:
            log.warning("call %s was cut off: %s", call_id, why)
            if seal:
                self.seal(call_id)
        return record

    def seal(self, call_id: str) -> None:
        """A call no node writes any more (interrupted): what was written of its recording becomes
        FLAC, and its duration the audio kept or its last event, the longer."""
        with self._session():
            record = self._record(call_id)
            last = self._one("SELECT MAX(at) FROM events WHERE call_id = ?", (call_id,))
        if record is None or record.state == "live":
            return
        audio, seconds = self._seal_recording(record)
        with self._session():
            self._update(call_id, {"audio": audio, "duration": max(seconds, float(last[0] or 0.0) if last else 0.0)})
            self._db.commit()

    def purge(self, older_than: float) -> int:
        """Delete calls started before ``older_than`` (Unix seconds): rows, events, reviews and recordings."""
        with self._session():
            old = [_record(row) for row in self._all(
                f"SELECT {', '.join(CALL_COLUMNS)} FROM calls WHERE started_at < ? AND state <> ?", (older_than, "live"))]
            for record in old:
                for table in ("events", "reviews", "calls"):
                    self._exec(f"DELETE FROM {table} WHERE call_id = ?", (record.call_id,))
                if record.audio:
                    (self.folder / record.audio).unlink(missing_ok=True)
            self._db.commit()
        return len(old)

    def close(self) -> None:
        with self._lock:
            for pcm in self._pcm.values():
                pcm.close()
            self._pcm.clear()
            if self._pool is not None:
                self._pool.close()
            else:
                self._db.close()

    # ---- internals ----
    def _silence(self, call_id: str, stretch: Silence) -> None:
        """Zero one channel of the call's raw recording from ``start`` to ``end`` seconds."""
        record = self._record(call_id)
        if record is None or record.audio is None or not record.audio.endswith(".pcm"):
            return
        path = self.folder / record.audio
        width = 2 * record.channels
        with open(path, "r+b") as raw:
            frames = raw.seek(0, 2) // width
            first, last = max(0, int(stretch.start * SAMPLE_RATE)), min(frames, int(np.ceil(stretch.end * SAMPLE_RATE)))
            if last <= first:
                return
            raw.seek(first * width)
            block = np.frombuffer(raw.read((last - first) * width), dtype="<i2").reshape(-1, record.channels).copy()
            block[:, min(stretch.channel, record.channels - 1)] = 0
            raw.seek(first * width)
            raw.write(block.tobytes())

    def _seal_recording(self, record: CallRecord) -> tuple[str | None, float]:
        if record.audio is None:
            return None, 0.0
        raw = self.folder / record.audio
        if not record.audio.endswith(".pcm"):
            return record.audio, record.duration
        if not raw.is_file() or raw.stat().st_size < 2 * record.channels:
            raw.unlink(missing_ok=True)
            return None, 0.0
        samples = np.fromfile(raw, dtype="<i2")
        samples = samples[: samples.size - samples.size % record.channels].reshape(-1, record.channels)
        flac = raw.with_suffix(".flac")
        write_flac(flac, samples)
        raw.unlink()
        return str(flac.relative_to(self.folder)), samples.shape[0] / SAMPLE_RATE

    def _update(self, call_id: str, summary: dict[str, Any]) -> None:
        current = self._record(call_id)
        if current is None:
            return
        changes: dict[str, Any] = {}
        if "risk" in summary:
            changes["risk"] = int(summary["risk"])
            changes["max_risk"] = max(current.max_risk, int(summary["risk"]))
        labels = list(current.labels)
        for label in summary.get("labels", []):
            if label not in labels:
                labels.append(label)
        if labels != current.labels:
            changes["labels"] = "," + ",".join(labels) + ","
            changes["flagged"] = 1
        for key in ("prompts", "state", "ended_at", "error", "audio", "duration", "agent_id"):
            if key in summary:
                changes[key] = summary[key]
        if "flagged" in summary:
            changes["flagged"] = int(bool(summary["flagged"]) or current.flagged)
        if changes:
            sets = ", ".join(f"{k} = ?" for k in changes)
            self._exec(f"UPDATE calls SET {sets} WHERE call_id = ?", (*changes.values(), call_id))

    def _record(self, call_id: str) -> CallRecord | None:
        row = self._one(f"SELECT {', '.join(CALL_COLUMNS)} FROM calls WHERE call_id = ?", (call_id,))
        return None if row is None else _record(row)

    def _max_seq(self, call_id: str) -> int:
        row = self._one("SELECT MAX(seq) FROM events WHERE call_id = ?", (call_id,))
        return -1 if row is None or row[0] is None else int(row[0])

    def _sql(self, sql: str) -> str:
        return sql if self._style == "qmark" else sql.replace("?", "%s")

    def _exec(self, sql: str, params: Iterable = ()) -> None:
        self._db.cursor().execute(self._sql(sql), tuple(params))

    def _one(self, sql: str, params: Iterable = ()):
        cur = self._db.cursor()
        cur.execute(self._sql(sql), tuple(params))
        return cur.fetchone()

    def _all(self, sql: str, params: Iterable = ()) -> list:
        cur = self._db.cursor()
        cur.execute(self._sql(sql), tuple(params))
        return cur.fetchall()


def _private_file(path: Path) -> Path:
    """``path``, created empty if it is not there, readable and writable by this user only (SQLite
    gives its -wal and -shm files the database file's mode)."""
    os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    _make_private(path, 0o600)
    return path


def _make_private(path: Path, mode: int) -> None:
    """``chmod`` what this user owns; what another owns (a mounted volume) is left, with a warning."""
    if path.stat().st_uid == os.geteuid():
        os.chmod(path, mode)
    elif path.stat().st_mode & 0o077:
        log.warning("%s belongs to another user and is readable by others; calls are personal data", path)


def _sqlite(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, check_same_thread=False, timeout=30)
    db.execute("PRAGMA journal_mode=WAL")  # readers never wait on the writer
    db.execute("PRAGMA synchronous=NORMAL")
    return db


def _file_name(call_id: str) -> str:
    return SAFE_ID.sub("_", call_id)[:120] + "-" + hashlib.sha1(call_id.encode()).hexdigest()[:8]


def _row(record: CallRecord) -> tuple:
    labels = "," + ",".join(record.labels) + "," if record.labels else ""
    return (record.call_id, record.agent_id, record.source, record.state, record.started_at, record.ended_at,
            record.duration, record.risk, record.max_risk, int(record.flagged), labels, record.prompts,
            record.channels, record.audio, record.error, record.node)


def _record(row) -> CallRecord:
    values = dict(zip(CALL_COLUMNS, row, strict=True))
    values["flagged"] = bool(values["flagged"])
    values["labels"] = [label for label in (values["labels"] or "").split(",") if label]
    return CallRecord(**values)


DURATION_STEP = 5.0  # s: a live call's duration in its row is brought up to date this often, or with its events


def _same_summary(written: dict[str, Any], summary: dict[str, Any]) -> bool:
    """Whether writing ``summary`` would change nothing a reader needs, ``written`` being the last written."""
    if any(written.get(k) != v for k, v in summary.items() if k != "duration"):
        return False
    return float(summary.get("duration", 0.0)) - float(written.get("duration", 0.0)) < DURATION_STEP


def _token(row) -> dict:
    values = dict(zip(TOKEN_COLUMNS, row, strict=True))
    values["revoked"] = bool(values["revoked"])
    return values


def pcm16(audio: np.ndarray) -> bytes:
    """``(samples, channels)`` float32 in [-1, 1] as interleaved little-endian 16-bit PCM."""
    return (np.clip(audio, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()


def write_flac(path: Path, samples: np.ndarray, rate: int = SAMPLE_RATE) -> None:
    """``(samples, channels)`` int16 as a FLAC file (lossless)."""
    import av

    layout = "stereo" if samples.shape[1] == 2 else "mono"
    tmp = path.with_suffix(".flac.part")
    with av.open(str(tmp), "w", format="flac") as out:
        stream = out.add_stream("flac", rate=rate, layout=layout)
        stream.format = "s16"
        for i in range(0, samples.shape[0], rate * 10):  # ten seconds a frame
            block = np.ascontiguousarray(samples[i : i + rate * 10])
            frame = av.AudioFrame.from_ndarray(block.reshape(1, -1), format="s16", layout=layout)
            frame.sample_rate = rate
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    os.chmod(tmp, 0o600)
    tmp.replace(path)


def open_store(data_dir: Path, database_url: str | None = None) -> SqlCallStore:
    """The embedded default: SQLite and FLAC files under ``data_dir``. With ``database_url``
    (``postgresql://...``), the calls, events, reviews and tokens are kept in PostgreSQL, and the
    recordings still under ``data_dir`` (a folder every node shares)."""
    if not database_url:
        return SqlCallStore(Path(data_dir))
    return SqlCallStore(Path(data_dir), pool=postgres_pool(database_url))


def postgres_pool(url: str, size: int = 4):
    """A pool of connections to PostgreSQL, checked once now: a :class:`StoreError` of one line if
    the server cannot be reached or refuses us."""
    from psycopg_pool import ConnectionPool

    check_postgres(url)
    pool = ConnectionPool(url, min_size=1, max_size=size, timeout=30, kwargs={"connect_timeout": 5}, open=False,
                          check=ConnectionPool.check_connection, name="coach-store")
    pool.open(wait=True, timeout=10)
    return pool


def check_postgres(url: str) -> None:
    """Connect once: a :class:`StoreError` of one line if PostgreSQL at ``url`` cannot be used."""
    import psycopg

    try:
        with psycopg.connect(url, connect_timeout=5):
            pass
    except psycopg.Error as exc:
        reason = " ".join(str(exc).split())[:300] or type(exc).__name__
        raise StoreError(f"cannot use PostgreSQL at {describe_database(url)}: {reason}") from None


def describe_database(url: str) -> str:
    """Where ``url`` points, without its password: ``host:port/dbname``."""
    try:
        from psycopg.conninfo import conninfo_to_dict

        parts = conninfo_to_dict(url)
    except Exception:
        return "the configured database URL (unreadable)"
    return f"{parts.get('host') or 'localhost'}:{parts.get('port') or 5432}/{parts.get('dbname') or parts.get('user') or ''}"
