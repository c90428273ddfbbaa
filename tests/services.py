"""Throwaway PostgreSQL and Redis for the tests, from Debian's packages (``make test`` installs them).

Each is started on a free port with its data in a temporary folder, and stopped and deleted after;
a service already running on this machine is never used. PostgreSQL refuses to run as root: as
root, it runs as Debian's ``postgres`` user.
"""

from __future__ import annotations

import glob
import json
import os
import pwd
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.live import ADMIN, free_port

ROOT = Path(__file__).resolve().parent.parent


def _postgres_binary(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=lambda p: int(Path(p).parts[4]))
    path = found[-1] if found else shutil.which(name)
    if path is None:
        raise RuntimeError(f"PostgreSQL's {name} is not installed: run `make system-deps` (Debian package postgresql)")
    return path


def _until(ready, what: str, proc: subprocess.Popen, log: Path, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not ready():
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited at start: {log.read_text()[-2000:]}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not come up in {seconds:g} s: {log.read_text()[-2000:]}")
        time.sleep(0.05)  # polling a server's readiness, with a deadline


@contextmanager
def postgres() -> Iterator[str]:
    """A PostgreSQL server of its own; yields the URL of its ``postgres`` database (user ``coach``, trusted)."""
    import psycopg

    root = Path(tempfile.mkdtemp(prefix="coach-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:
        owner = pwd.getpwnam("postgres")
        os.chown(root, owner.pw_uid, owner.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    data, log = root / "data", root / "server.log"
    subprocess.run([*as_user, _postgres_binary("initdb"), "-D", str(data), "-A", "trust", "-U", "coach", "-E", "UTF8", "--no-sync"],
                   check=True, capture_output=True)
    port = free_port()
    with open(log, "w") as out:
        os.chown(log, *(os.stat(root).st_uid, os.stat(root).st_gid))
        proc = subprocess.Popen([*as_user, _postgres_binary("postgres"), "-D", str(data), "-p", str(port), "-k", str(root),
                                 "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "max_connections=200"],
                                stdout=out, stderr=subprocess.STDOUT)
    url = f"postgresql://coach@127.0.0.1:{port}/postgres"

    def ready() -> bool:
        try:
            with psycopg.connect(url, connect_timeout=2):
                return True
        except psycopg.OperationalError:
            return False

    try:
        _until(ready, "postgres", proc, log)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(root, ignore_errors=True)


def fresh_database(server_url: str) -> str:
    """A new, empty database on the server at ``server_url``: its URL."""
    import psycopg

    name = "t_" + secrets.token_hex(6)
    with psycopg.connect(server_url, autocommit=True) as db:
        db.execute(f"CREATE DATABASE {name}")
    return server_url.rsplit("/", 1)[0] + "/" + name


@dataclass
class RedisServer:
    """A redis-server of its own (no persistence): ``stop`` and ``start`` again on the same port."""

    port: int
    folder: Path
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        import redis

        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed: run `make system-deps` (Debian package redis-server)")
        log = self.folder / "redis.log"
        with open(log, "a") as out:
            self.proc = subprocess.Popen([binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                                          "--dir", str(self.folder)], stdout=out, stderr=subprocess.STDOUT)
        client = redis.Redis(port=self.port, socket_connect_timeout=1)

        def ready() -> bool:
            try:
                return bool(client.ping())
            except redis.ConnectionError:
                return False

        try:
            _until(ready, "redis-server", self.proc, log)
        finally:
            client.close()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(30)


@contextmanager
def redis_server() -> Iterator[RedisServer]:
    folder = Path(tempfile.mkdtemp(prefix="coach-redis-"))
    server = RedisServer(free_port(), folder)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)


class Node:
    """One ``coach serve`` process with the stand-in models (``tests.serve_fakes``), a node of a cluster."""

    def __init__(self, name: str, data_dir: Path, database_url: str, redis_url: str) -> None:
        self.name, self.port = name, free_port()
        self.url, self.ws = f"http://127.0.0.1:{self.port}", f"ws://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.serve_fakes", str(data_dir), str(self.port), f"database_url={database_url}",
             f"redis_url={redis_url}", f"node_id={name}"],
            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
        )

    def get(self, path: str, token: str = ADMIN):
        req = urllib.request.Request(self.url + path, headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())

    def post(self, path: str, body: dict, token: str = ADMIN):
        req = urllib.request.Request(self.url + path, data=json.dumps(body).encode(), method="POST",
                                     headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())

    def wait_up(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # waiting for the process to listen, with a deadline
            try:
                self.get("/healthz")
                return
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"node {self.name} did not start")
                time.sleep(0.1)
        raise RuntimeError(f"node {self.name} did not come up")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
