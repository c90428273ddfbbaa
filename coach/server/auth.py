"""Who may do what: bearer tokens with a role, stored hashed in the data dir.

Roles (live-api.md): ``admin`` (everything, issues tokens), ``lead`` and ``qa`` (every call),
``agent`` (their own calls only), ``ingest`` (sends call audio). The admin token comes from
``COACH_ADMIN_TOKEN``; the others are issued by an admin and kept as SHA-256 hashes, so nothing
kept holds a usable token: in ``DATA_DIR/tokens.json`` on one node, or in the ``tokens`` table of
a database the nodes of a cluster share (a token issued on one node works on all of them, and a
revocation holds on all of them at once). Tokens can expire and be revoked.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import secrets
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal, Protocol

Role = Literal["admin", "lead", "qa", "agent", "ingest"]
ROLES: tuple[Role, ...] = ("admin", "lead", "qa", "agent", "ingest")


@dataclass(frozen=True)
class Principal:
    role: Role
    agent_id: str | None = None
    token_id: str | None = None
    name: str | None = None

    @property
    def who(self) -> str:
        """How this holder is named in what they write (QA reviews)."""
        return self.name or (f"{self.role} token {self.token_id}" if self.token_id else self.role)

    @property
    def can_review(self) -> bool:
        return self.role in ("admin", "lead", "qa")

    def can_view(self, agent_id: str | None) -> bool:
        """May this holder read a call handled by ``agent_id``?"""
        if self.role in ("admin", "lead", "qa"):
            return True
        return self.role == "agent" and self.agent_id is not None and self.agent_id == agent_id

    @property
    def can_ingest(self) -> bool:
        return self.role in ("admin", "ingest")

    @property
    def sees_every_call(self) -> bool:
        return self.role in ("admin", "lead", "qa")


@dataclass
class TokenRecord:
    id: str
    hash: str
    role: Role
    agent_id: str | None = None
    name: str | None = None
    created: float = 0.0
    expires: float | None = None
    revoked: bool = False

    def public(self) -> dict:
        out = asdict(self)
        out.pop("hash")
        return out


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class TokenTable(Protocol):
    """Tokens kept in a shared database (:class:`coach.store.SqlCallStore`); every method blocks."""

    def add_token(self, row: dict) -> None: ...
    def token_by_hash(self, digest: str) -> dict | None: ...
    def revoke_token(self, token_id: str) -> bool: ...
    def tokens(self) -> list[dict]: ...


class TokenStore:
    def __init__(self, path: Path, admin_token: str | None, table: TokenTable | None = None) -> None:
        self.path = path
        self._table = table  # None: the tokens file
        self._admin = _digest(admin_token) if admin_token else None
        self._records: dict[str, TokenRecord] = {}
        self._by_hash: dict[str, TokenRecord] = {}
        # issue and revoke run in worker threads: each change and its save is one step, so a save can
        # never write out a list taken before another thread's change (a revoke undone)
        self._lock = threading.Lock()
        if table is None and path.exists():
            for item in json.loads(path.read_text() or "[]"):
                self._add(TokenRecord(**item))

    def _add(self, record: TokenRecord) -> None:
        self._records[record.id] = record
        self._by_hash[record.hash] = record

    async def authenticate(self, token: object) -> Principal | None:
        if not token or not isinstance(token, str):  # a stream's JSON may carry anything here
            return None
        digest = _digest(token)
        if self._admin and hmac.compare_digest(digest, self._admin):
            return Principal("admin")
        # looked up by the token's hash, never by the token
        if self._table is not None:
            row = await asyncio.to_thread(self._table.token_by_hash, digest)
            record = None if row is None else TokenRecord(**row)
        else:
            record = self._by_hash.get(digest)
        if record is None or record.revoked or (record.expires is not None and record.expires < time.time()):
            return None
        return Principal(record.role, record.agent_id, record.id, record.name)

    def issue(self, role: Role, agent_id: str | None = None, name: str | None = None, ttl: float | None = None) -> tuple[str, TokenRecord]:
        """A new token (shown once) and its record. Writes the file: call it off the event loop."""
        if role not in ROLES or role == "admin":
            raise ValueError(f"role must be one of lead, qa, agent, ingest, not {role!r}")
        if role == "agent" and not agent_id:
            raise ValueError("an agent token needs the agent_id whose calls it may see")
        token = secrets.token_urlsafe(24)
        now = time.time()
        record = TokenRecord(
            secrets.token_hex(6), _digest(token), role, agent_id, name, round(now, 3), None if ttl is None else round(now + ttl, 3)
        )
        if self._table is not None:
            self._table.add_token(asdict(record))
            return token, record
        with self._lock:
            self._add(record)
            self._save()
        return token, record

    def revoke(self, token_id: str) -> bool:
        """Writes the file: call it off the event loop."""
        if self._table is not None:
            return self._table.revoke_token(token_id)
        with self._lock:
            record = self._records.get(token_id)
            if record is None:
                return False
            record.revoked = True
            self._save()
            return True

    def import_file(self) -> int:
        """With a shared database: copy the tokens of this node's tokens file that the database
        lacks into it (a node moving to a shared database keeps its tokens working). Blocking."""
        if self._table is None or not self.path.exists():
            return 0
        known = {row["id"] for row in self._table.tokens()}
        added = 0
        for item in json.loads(self.path.read_text() or "[]"):
            if item["id"] not in known:
                self._table.add_token(item)
                added += 1
        return added

    def records(self) -> list[TokenRecord]:
        """Every token issued (blocking with a shared database: call it off the event loop)."""
        if self._table is not None:
            return [TokenRecord(**row) for row in self._table.tokens()]
        return list(self._records.values())

    def _save(self) -> None:
        """Write atomically (a crash leaves the old file or the new one, never half of one)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".tokens-")
        with os.fdopen(fd, "w") as f:
            json.dump([asdict(r) for r in list(self._records.values())], f, indent=1)
        os.chmod(tmp, 0o600)
        os.replace(tmp, self.path)
