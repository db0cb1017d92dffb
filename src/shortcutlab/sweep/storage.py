"""Where a study lives, and the lock workers take to claim their next trial.

A study lives in an Optuna RDB storage: a SQLite file by default (one machine, any number
of local worker processes) or a PostgreSQL database (``postgresql://user@host/db``, any
number of workers on any number of machines).

Optuna assigns trial numbers atomically, but deciding *which* grid point a new trial runs
is a read-then-write: look at the trials, pick a point nobody holds, create a trial for it.
Two workers doing that at once can pick the same point (Optuna's GridSampler documents
that it may run a point twice under concurrency). So workers take a study-wide lock around
the claim: a PostgreSQL advisory lock (held by the worker's own connection, so a worker
that dies releases it) or, for SQLite, an exclusive ``flock`` on a file beside the
database. The lock only covers the claim, milliseconds, never the training.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from shortcutlab.errors import ShortcutlabError

HEARTBEAT_INTERVAL_S = 20
# A worker whose heartbeat is this old is dead; its trial is failed and its point re-run.
GRACE_PERIOD_S = 120
SQLITE_TIMEOUT_S = 120


@contextlib.contextmanager
def quiet_optuna() -> Iterator[None]:
    """Hide Optuna's warnings about features we use on purpose (heartbeats are marked
    experimental, and meant for ``study.optimize``, while our workers ask and tell)."""
    import warnings

    from optuna.exceptions import ExperimentalWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed")
        yield


def normalize_url(url: str) -> str:
    """Accept ``postgres://`` (as Heroku and others write it) and bare SQLite file paths."""
    if "://" not in url:
        return "sqlite:///" + str(Path(url).expanduser().resolve())
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://"):]
    if url.startswith("postgresql://"):
        url = f"postgresql+{_postgres_driver()}://" + url[len("postgresql://"):]
    return url


def _postgres_driver() -> str:
    """The installed PostgreSQL driver: SQLAlchemy 2.1 assumes psycopg 3 for a bare
    ``postgresql://``, while shortcutlab depends on psycopg2."""
    import importlib.util

    for module, driver in (("psycopg2", "psycopg2"), ("psycopg", "psycopg")):
        if importlib.util.find_spec(module) is not None:
            return driver
    raise ShortcutlabError(
        "no PostgreSQL driver is installed; pip install psycopg2-binary"
    )


def default_url(output: Path) -> str:
    return "sqlite:///" + str((output / "sweep.db").resolve())


def scheme(url: str) -> str:
    return url.split("://", 1)[0].split("+", 1)[0]


def sqlite_path(url: str) -> Path | None:
    """The database file of a ``sqlite:///`` URL (None for in-memory)."""
    path = url.split("://", 1)[1]
    if path.startswith("/"):
        path = path[1:]
    if path in ("", ":memory:"):
        return None
    return Path(path) if Path(path).is_absolute() else Path(path).resolve()


def check_url(url: str) -> None:
    kind = scheme(url)
    if kind == "sqlite":
        if sqlite_path(url) is None:
            raise ShortcutlabError(
                "an in-memory SQLite study cannot be shared between workers; "
                "use sqlite:///PATH/TO/FILE.db"
            )
        return
    if kind != "postgresql":
        raise ShortcutlabError(
            f"unsupported storage {url!r}; use sqlite:///PATH.db (one machine) or "
            "postgresql://USER@HOST:PORT/DB (many machines)"
        )


def open_storage(url: str) -> Any:
    """An Optuna RDBStorage with heartbeats, so the trials of dead workers are re-run."""
    import optuna

    check_url(url)
    if scheme(url) == "sqlite":
        path = sqlite_path(url)
        assert path is not None
        path.parent.mkdir(parents=True, exist_ok=True)
        engine_kwargs: dict[str, Any] = {"creator": lambda: _sqlite_connect(path)}
    else:
        engine_kwargs = {"pool_pre_ping": True}
    try:
        with quiet_optuna():
            return optuna.storages.RDBStorage(
                url, engine_kwargs=engine_kwargs, heartbeat_interval=HEARTBEAT_INTERVAL_S,
                grace_period=GRACE_PERIOD_S,
            )
    except Exception as exc:  # sqlalchemy/psycopg2 raise many types for one cause
        if isinstance(exc, ShortcutlabError):
            raise
        raise ShortcutlabError(
            f"cannot open the study storage {redact(url)}: {type(exc).__name__}: "
            f"{str(exc).strip().splitlines()[0] if str(exc).strip() else ''}. "
            "Check that the database server runs and the URL is right"
            " (for the test server: scripts/services.sh start)"
        ) from exc


def _sqlite_connect(path: Path) -> Any:
    """A connection in WAL mode: readers never block the writer, and a commit costs a write,
    not an fsync (a crash can lose the last commits, never corrupt the file)."""
    import sqlite3

    connection = sqlite3.connect(path, timeout=SQLITE_TIMEOUT_S, check_same_thread=False)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")
    return connection


def redact(url: str) -> str:
    """The URL without its password, for messages and reports."""
    if "://" not in url or "@" not in url:
        return url
    head, rest = url.split("://", 1)
    credentials, host = rest.rsplit("@", 1)
    user = credentials.split(":", 1)[0]
    return f"{head}://{user}{':***' if ':' in credentials else ''}@{host}"


def _lock_key(study: str) -> int:
    digest = hashlib.sha256(f"shortcutlab-sweep:{study}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class ClaimLock:
    """A study-wide mutual exclusion shared by every worker of a storage."""

    def __init__(self, url: str, study: str) -> None:
        self.url = url
        self.study = study
        self._engine: Any = None
        self._connection: Any = None

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        if scheme(self.url) == "sqlite":
            with file_lock(self._lock_file()):
                yield
            return
        connection = self._pg_connection()
        key = _lock_key(self.study)
        from sqlalchemy import text

        connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": key})
        try:
            yield
        finally:
            connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})

    def _lock_file(self) -> Path:
        path = sqlite_path(self.url)
        assert path is not None
        return path.with_name(path.name + ".claim-lock")

    def _pg_connection(self) -> Any:
        if self._connection is None:
            import sqlalchemy

            self._engine = sqlalchemy.create_engine(
                self.url, isolation_level="AUTOCOMMIT", pool_size=1, max_overflow=0
            )
            self._connection = self._engine.connect()
        return self._connection

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._engine.dispose()
            self._connection = self._engine = None


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive ``flock``; the kernel releases it if the holder dies."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)

