"""What a running server owns, typed: built once by the lifespan, released in order when it stops,
and handed to the routes as a dependency (``coach/server/deps.py``).

:func:`serving` builds it: the speech and text models (loaded once and shared by every call), their
executors, the store and its one writer thread, the live calls, the tokens, and in cluster mode this
node's part in the cluster. When the server stops, live calls are finished first (their recordings
sealed, their last messages out to the other nodes), then the rest, in reverse order.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import AsyncIterator
from concurrent.futures import Executor, ThreadPoolExecutor
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from coach.asr.ladder import LadderSettings, QualityLadder
from coach.asr.scheduler import AsrScheduler
from coach.config import Settings, default_max_calls
from coach.playbook import Playbook, PlaybookError, load_playbook
from coach.server.auth import TokenStore
from coach.server.calls import CallRegistry, CallServices
from coach.server.cluster import Cluster
from coach.server.guards import RateLimiter
from coach.server.metrics import ServiceCounters
from coach.store import SqlCallStore, open_store

log = logging.getLogger("coach.server")

LOAD = object()  # load the configured model


class PlaybookWatch:
    """The playbook file, watched: an edit is loaded, and calls that start after it use it (a live
    call keeps the playbook it started with). An invalid edit is refused in one log line per
    problem, shown in ``/api/playbook``, and the playbook in use stays."""

    def __init__(self, path: Path, playbook: Playbook, services: CallServices, stamp: tuple[int, int] | None, every: float = 1.0) -> None:
        """``stamp``: the file's, taken just before ``playbook`` was read from it (an edit after that is picked up)."""
        self.path, self.active, self.services, self.every = Path(path), playbook, services, every
        self.loaded_at = time.time()
        self.error: str | None = None
        self._stamp = stamp

    async def watching(self) -> None:
        while True:
            await asyncio.sleep(self.every)  # the file's check period
            stamp = await asyncio.to_thread(playbook_stamp, self.path)
            if stamp == self._stamp:
                continue
            self._stamp = stamp
            try:
                await self._reload()
            except PlaybookError as exc:
                self.error = str(exc)
                for line in self.error.splitlines():
                    log.error("playbook not used, the one in use stays: %s", line)
            except Exception as exc:  # a failure of ours: the one in use stays, and the watch goes on
                self.error = f"{self.path}: could not be loaded ({type(exc).__name__}: {exc})"
                log.exception("playbook %s could not be loaded; the one in use stays", self.path)

    async def _reload(self) -> None:
        book = await asyncio.to_thread(load_playbook, self.path)
        meaning = tuple(await self.services.text.banks(book.meaning_inputs())) if self.services.text is not None else ()
        if book.meaning_inputs() and self.services.text is None:
            log.warning("the playbook's examples need the text models (COACH_TEXT__ENABLED): only its phrases are used")
        self.services.meaning = meaning
        self.active = self.services.playbook = book
        self.loaded_at, self.error = time.time(), None
        log.warning("playbook %s reloaded: %d signals of its own, %d prompts", self.path, len(book.signals), len(book.prompts))


def playbook_stamp(path: Path) -> tuple[int, int] | None:
    """The file's modification time and size: it changed when they did."""
    try:
        info = Path(path).stat()
    except OSError:
        return None
    return info.st_mtime_ns, info.st_size


@dataclass
class ServerState:
    settings: Settings
    rate: RateLimiter
    store: SqlCallStore
    store_executor: Executor
    scheduler: AsrScheduler
    registry: CallRegistry
    tokens: TokenStore
    counters: ServiceCounters
    playbook: PlaybookWatch
    cluster: Cluster | None = None

    async def in_store(self, method, *args):
        """Run a store method in the store's thread (reads and writes in order, never on the loop)."""
        return await asyncio.get_running_loop().run_in_executor(self.store_executor, method, *args)


@asynccontextmanager
async def serving(settings: Settings, playbook: Playbook, rate: RateLimiter, *, transcriber: Any = None, text: Any = LOAD,
                  vad_factory: Any = None, playbook_stamp: tuple[int, int] | None = None) -> AsyncIterator[ServerState]:
    from coach.models import load_text_analyzer, load_transcriber

    loop = asyncio.get_running_loop()
    server = settings.server
    async with AsyncExitStack() as owned:  # what was made is released in reverse order, whatever failed after it
        speech = transcriber or await asyncio.to_thread(load_transcriber, settings)
        text_models = await asyncio.to_thread(load_text_analyzer, settings) if text is LOAD else text
        if text_models is not None and text is LOAD:
            owned.callback(text_models.close)
        ladder = QualityLadder(LadderSettings(climb_at=server.ladder_climb_at, top=server.ladder_top))
        scheduler = AsrScheduler(speech, settings.asr.worker_count, shed_interims_after=server.shed_interims_after,
                                 max_batch=server.max_batch, ladder=ladder)
        owned.callback(scheduler.close)
        vad_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vad")
        owned.callback(vad_executor.shutdown, wait=True)
        redact_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="redact")
        owned.callback(redact_executor.shutdown, wait=True)
        services = CallServices(scheduler, settings.asr, vad_executor, playbook, text_models, reader_limit=server.reader_limit,
                                redaction=settings.redaction, redact_executor=redact_executor)
        if vad_factory is not None:
            services.vad_factory = vad_factory
        if text_models is not None:
            services.meaning = tuple(await text_models.banks(playbook.meaning_inputs()))
        elif playbook.meaning_inputs():
            log.warning("the playbook's examples need the text models (COACH_TEXT__ENABLED): only its phrases are used")
        store_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store")
        owned.callback(store_executor.shutdown, wait=True)
        database_url = server.database_url.get_secret_value() if server.database_url else None
        store = await loop.run_in_executor(store_executor, open_store, server.data_dir, database_url)
        owned.push_async_callback(loop.run_in_executor, store_executor, store.close)
        max_calls = default_max_calls() if server.max_calls is None else server.max_calls
        registry = CallRegistry(
            services, keep_ended=server.keep_ended, store=store, store_executor=store_executor, max_calls=max_calls,
            refuse_lag=server.refuse_lag, max_calls_per_sender=max_calls if server.max_calls_per_token is None else server.max_calls_per_token,
        )
        admin = settings.admin_token.get_secret_value() if settings.admin_token else None
        tokens = TokenStore(server.data_dir / "tokens.json", admin, table=store if store.shared else None)
        watch = PlaybookWatch(settings.playbook, playbook, services, playbook_stamp)
        state = ServerState(settings, rate, store, store_executor, scheduler, registry, tokens, services.counters, watch)
        if server.redis_url is not None:
            registry.node_id = server.node_id or f"{socket.gethostname()}-{os.getpid()}"
            state.cluster = registry.cluster = Cluster(
                server.redis_url.get_secret_value(), registry.node_id, registry.board, store, store_executor,
                heartbeat=server.heartbeat, node_timeout=server.node_timeout, keep_ended=server.keep_ended, local=registry.has,
            )
            await state.cluster.start()  # the other nodes' calls are on this node's board from here on
            owned.push_async_callback(state.cluster.aclose)  # (after the calls below: their last messages go out first)
            registry.board.mirror, services.mirror = state.cluster.mirror_board, state.cluster.mirror_call
        else:  # one node: a call left live was cut off by its last stop (in a cluster, the nodes look after each other)
            recovered = await state.in_store(store.recover)
            if recovered:
                log.warning("kept %d call(s) cut off by the last stop, marked interrupted", len(recovered))
        if store.shared:
            imported = await asyncio.to_thread(tokens.import_file)
            if imported:
                log.warning("copied %d token(s) from %s into the database, which the nodes share", imported, tokens.path)
        owned.push_async_callback(registry.aclose)  # live calls finish (recordings sealed) while the models are here
        upkeep = loop.create_task(_retention(state, server.retention_days))
        owned.push_async_callback(_cancelled, upkeep)
        watching = loop.create_task(watch.watching(), name="playbook watch")
        owned.push_async_callback(_cancelled, watching)
        log.info("serving; data in %s", server.data_dir)
        yield state


async def _cancelled(task: asyncio.Task) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def _retention(state: ServerState, days: float) -> None:
    """Delete calls older than ``days``, now and every hour."""
    if days <= 0:
        return
    while True:
        removed = await state.in_store(state.store.purge, time.time() - days * 86400)
        if removed:
            log.info("retention: deleted %d call(s) older than %g days", removed, days)
        await asyncio.sleep(3600)
