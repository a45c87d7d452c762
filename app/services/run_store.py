"""The shared run store: each run's request under its ``run_id``, readable by every worker and replica.

A run's capture (Q, K, LSE) lives in the memory of the worker that computed it (``RunCache``); what
every worker shares is the small request that determines it (model, weights fingerprint, text, text
pair, backend, format version). A worker asked for a run it has not computed reads the request here
and recomputes the capture (``RunService.get``). Stores, chosen by ``ATTNLAB_RUN_STORE``:

- ``sqlite`` (default): an SQLite database in WAL mode at ``<cache_dir>/runs.sqlite3``, shared by all
  workers of one machine (``sqlite:///path/to/runs.sqlite3`` puts it elsewhere). WAL lets readers go on
  while one worker writes; a write takes the lock for well under a millisecond.
- ``redis://host:6379/0`` (also ``rediss://``, ``unix://``): a Redis server shared by replicas on
  several machines, through the ``redis`` client's asyncio API. Keys ``attnlab:run:<run_id>``.
- ``memory``: this process only, for one worker (and tests).

Entries expire ``run_ttl_s`` seconds (default 24 h) after the last ``POST /api/runs`` of that request.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from abc import ABC, abstractmethod
from pathlib import Path

import anyio.to_thread
import orjson

from attnlab.models.paths import cache_dir

from .errors import Overloaded

log = logging.getLogger(__name__)

SQLITE_FILE = "runs.sqlite3"
REDIS_PREFIX = "attnlab:run:"
REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


class RunStore(ABC):
    """Run requests by run_id, each expiring ``ttl_s`` seconds after its last ``put``."""

    kind: str

    def __init__(self, ttl_s: float):
        if ttl_s <= 0:
            raise ValueError(f"run_ttl_s: {ttl_s} must be > 0 seconds")
        self.ttl_s = ttl_s

    @abstractmethod
    async def put(self, run_id: str, request: dict) -> None:
        """Store (or refresh the expiry of) ``request`` under ``run_id``."""

    @abstractmethod
    async def get(self, run_id: str) -> dict | None:
        """The request stored under ``run_id``, or None when unknown or expired."""

    async def close(self) -> None:  # noqa: B027 - most stores hold nothing to release
        """Release connections (the app's lifespan calls it at shutdown)."""

    def describe(self) -> str:
        return self.kind


class MemoryRunStore(RunStore):
    """One process's dict: enough for one worker, never shared."""

    kind = "memory"

    def __init__(self, ttl_s: float):
        super().__init__(ttl_s)
        self._entries: dict[str, tuple[float, dict]] = {}

    async def put(self, run_id: str, request: dict) -> None:
        now = time.time()
        if len(self._entries) > 4096:  # drop expired entries now and then, so the dict stays small
            self._entries = {k: v for k, v in self._entries.items() if v[0] > now}
        self._entries[run_id] = (now + self.ttl_s, dict(request))

    async def get(self, run_id: str) -> dict | None:
        entry = self._entries.get(run_id)
        if entry is None or entry[0] <= time.time():
            return None
        return dict(entry[1])


class SQLiteRunStore(RunStore):
    """An SQLite file in WAL mode shared by the worker processes of one machine (one connection per thread)."""

    kind = "sqlite"

    def __init__(self, path: Path, ttl_s: float):
        super().__init__(ttl_s)
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._connect()  # create the table (and fail at start-up, not at the first request, on a bad path)

    def _connect(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            # autocommit (isolation_level=None): each statement is its own short transaction
            conn = sqlite3.connect(self.path, timeout=10.0, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across a process crash
            conn.execute("CREATE TABLE IF NOT EXISTS runs (run_id TEXT PRIMARY KEY, request BLOB NOT NULL, "
                         "expires REAL NOT NULL)")
            conn.execute("CREATE INDEX IF NOT EXISTS runs_expires ON runs (expires)")
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
        return conn

    def _put(self, run_id: str, blob: bytes) -> None:
        conn = self._connect()
        now = time.time()
        conn.execute("INSERT INTO runs (run_id, request, expires) VALUES (?, ?, ?) ON CONFLICT(run_id) DO UPDATE "
                     "SET request = excluded.request, expires = excluded.expires", (run_id, blob, now + self.ttl_s))
        conn.execute("DELETE FROM runs WHERE expires <= ?", (now,))  # indexed: cheap when nothing expired

    def _get(self, run_id: str) -> bytes | None:
        row = self._connect().execute("SELECT request FROM runs WHERE run_id = ? AND expires > ?",
                                      (run_id, time.time())).fetchone()
        return row[0] if row else None

    async def put(self, run_id: str, request: dict) -> None:
        await anyio.to_thread.run_sync(self._put, run_id, orjson.dumps(request))

    async def get(self, run_id: str) -> dict | None:
        blob = await anyio.to_thread.run_sync(self._get, run_id)
        return None if blob is None else orjson.loads(blob)

    async def close(self) -> None:
        with self._lock:
            for conn in self._connections:
                conn.close()
            self._connections.clear()
        self._local = threading.local()

    def describe(self) -> str:
        return f"sqlite ({self.path})"


class RedisRunStore(RunStore):
    """A Redis server shared by replicas (``SET key value EX ttl``); the client connects on first use."""

    kind = "redis"

    def __init__(self, url: str, ttl_s: float, retry_after_s: int = 2):
        super().__init__(ttl_s)
        import redis.asyncio  # imported here: only servers configured for Redis need the client

        self.url = url
        self.retry_after_s = retry_after_s
        self._client = redis.asyncio.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=5)
        self._errors = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)

    def _unreachable(self, err: Exception) -> Overloaded:
        log.warning("run store %s unreachable: %s", self.describe(), err)
        return Overloaded(f"run_id: the run store ({self.describe()}) is unreachable: {err}; retry in "
                          f"{self.retry_after_s} s", self.retry_after_s)

    async def put(self, run_id: str, request: dict) -> None:
        try:
            await self._client.set(REDIS_PREFIX + run_id, orjson.dumps(request), ex=max(1, round(self.ttl_s)))
        except self._errors as err:
            raise self._unreachable(err) from None

    async def get(self, run_id: str) -> dict | None:
        try:
            blob = await self._client.get(REDIS_PREFIX + run_id)
        except self._errors as err:
            raise self._unreachable(err) from None
        return None if blob is None else orjson.loads(blob)

    async def close(self) -> None:
        await self._client.aclose()

    def describe(self) -> str:
        # never the password: redis://user:secret@host -> redis://host
        scheme, _, rest = self.url.partition("://")
        return f"redis ({scheme}://{rest.rpartition('@')[2]})"


def open_run_store(spec: str, ttl_s: float, retry_after_s: int = 2) -> RunStore:
    """The store ``spec`` names (``ATTNLAB_RUN_STORE``): ``sqlite``, ``sqlite:///path``, ``redis://...``
    or ``memory``. Raises ValueError naming the accepted forms for anything else."""
    if spec == "memory":
        return MemoryRunStore(ttl_s)
    if spec == "sqlite":
        return SQLiteRunStore(cache_dir() / SQLITE_FILE, ttl_s)
    if spec.startswith("sqlite:///"):
        return SQLiteRunStore(Path(spec.removeprefix("sqlite:///")).expanduser().resolve(), ttl_s)
    if spec.startswith(REDIS_SCHEMES):
        return RedisRunStore(spec, ttl_s, retry_after_s)
    raise ValueError(f"run_store: {spec!r} is not a run store; use 'sqlite' (default: {SQLITE_FILE} in the cache "
                     "directory), 'sqlite:///path/to/file', 'redis://host:6379/0' or 'memory' (one worker only)")
