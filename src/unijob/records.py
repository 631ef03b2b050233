"""Job and endpoint records: a SQLite database (stdlib ``sqlite3``) under ``$UNIJOB_HOME``.

One row per submission: id, name, target, native id, spec hash, submission id (the idempotency
key), state, times, restarts, the handle (JSON) and a state history. Safe under concurrent CLI calls
(WAL journal, a busy timeout, every write in one short transaction) and under a CLI killed
mid-submit: the record is written as ``SUBMITTING`` *before* anything is sent, so a rerun of the
same submit finds it and reuses its submission id, and the adapter's idempotent submit maps it to
the same native job instead of starting a second one.

Secrets never reach a record: only spec hashes, names and handles (which hold no secret values) are
stored.
"""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional

from unijob._process import pid_exists
from unijob.errors import NotFound, UsageError

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    target        TEXT NOT NULL,
    native_id     TEXT,
    spec_hash     TEXT NOT NULL,
    spec_path     TEXT,
    submission_id TEXT NOT NULL UNIQUE,
    state         TEXT NOT NULL,
    message       TEXT NOT NULL DEFAULT '',
    restarts      INTEGER NOT NULL DEFAULT 0,
    created_at    REAL NOT NULL,
    updated_at    REAL NOT NULL,
    started_at    REAL,
    ended_at      REAL,
    handle        TEXT,
    owner_pid     INTEGER
);
CREATE INDEX IF NOT EXISTS jobs_created ON jobs(created_at);
CREATE TABLE IF NOT EXISTS job_events (
    job_id  TEXT NOT NULL REFERENCES jobs(id),
    at      REAL NOT NULL,
    state   TEXT NOT NULL,
    message TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS endpoints (
    name       TEXT NOT NULL,
    target     TEXT NOT NULL,
    state      TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    handle     TEXT,
    PRIMARY KEY (name, target)
);
"""


@dataclass
class JobRecord:
    """One submission as recorded locally. Times are POSIX seconds."""

    id: str
    name: str
    target: str
    native_id: Optional[str]
    spec_hash: str
    spec_path: Optional[str]
    submission_id: str
    state: str
    message: str
    restarts: int
    created_at: float
    updated_at: float
    started_at: Optional[float]
    ended_at: Optional[float]
    handle: Optional[dict[str, Any]] = None
    owner_pid: Optional[int] = None
    history: list[tuple[float, str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["history"] = [{"at": a, "state": s, "message": m} for a, s, m in self.history]
        return d


def db_path() -> Path:
    from unijob.paths import home

    return home() / "jobs.sqlite3"


class Records:
    """The record store. Open one per CLI call; every method is its own transaction.

    Args:
        path: the SQLite file (default ``$UNIJOB_HOME/jobs.sqlite3``).
    """

    def __init__(self, path: Optional[Path] = None) -> None:
        self.path = Path(path) if path else db_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        self._conn.row_factory = sqlite3.Row
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA busy_timeout=30000")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        with self._tx() as c:
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    c.execute(statement)

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> "Records":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield self._conn
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        else:
            self._conn.execute("COMMIT")

    # ---- jobs -------------------------------------------------------------------------------

    def begin_submission(self, *, name: str, target: str, spec_hash: str, spec_path: Optional[str],
                         submission_id: Optional[str] = None) -> tuple[JobRecord, bool]:
        """Record a submission as ``SUBMITTING`` before anything is sent.

        When ``submission_id`` is None, an unfinished submission of the same spec hash to the same
        target (state SUBMITTING) whose CLI process is gone (killed mid-submit) is resumed instead
        of starting a new one; a submission whose CLI is still alive is left to it.

        Returns:
            (record, resumed): resumed is True when an earlier record is being retried.
        """
        now = time.time()
        with self._tx() as c:
            if submission_id is not None:
                row = c.execute("SELECT * FROM jobs WHERE submission_id=?", (submission_id,)).fetchone()
                if row:
                    return self._row(row), True
            else:
                rows = c.execute(
                    "SELECT * FROM jobs WHERE spec_hash=? AND target=? AND state='SUBMITTING' "
                    "ORDER BY created_at DESC", (spec_hash, target)).fetchall()
                for row in rows:
                    if not _alive(row["owner_pid"]):
                        c.execute("UPDATE jobs SET owner_pid=? WHERE id=?", (os.getpid(), row["id"]))
                        return self._row(row), True
                submission_id = secrets.token_hex(8)
            job_id = secrets.token_hex(4)
            c.execute(
                "INSERT INTO jobs (id, name, target, spec_hash, spec_path, submission_id, state, created_at, updated_at,"
                " owner_pid) VALUES (?,?,?,?,?,?,?,?,?,?)",
                (job_id, name, target, spec_hash, spec_path, submission_id, "SUBMITTING", now, now, os.getpid()))
            c.execute("INSERT INTO job_events VALUES (?,?,?,?)", (job_id, now, "SUBMITTING", ""))
        return self.get(job_id), False

    def set_submitted(self, job_id: str, native_id: str, handle: dict[str, Any]) -> None:
        """Store the platform's id and handle; the state becomes QUEUED."""
        self.update(job_id, state="QUEUED", native_id=native_id, handle=handle)

    def update(self, job_id: str, *, state: Optional[str] = None, message: Optional[str] = None,
               restarts: Optional[int] = None, native_id: Optional[str] = None,
               handle: Optional[dict[str, Any]] = None, started_at: Optional[float] = None,
               ended_at: Optional[float] = None) -> JobRecord:
        """Update fields; a state change is appended to the history."""
        now = time.time()
        with self._tx() as c:
            row = c.execute("SELECT state, message FROM jobs WHERE id=?", (job_id,)).fetchone()
            if row is None:
                raise NotFound(f"no job '{job_id}' in the records")
            sets: dict[str, Any] = {"updated_at": now}
            for k, v in (("state", state), ("message", message), ("restarts", restarts), ("native_id", native_id),
                         ("started_at", started_at), ("ended_at", ended_at)):
                if v is not None:
                    sets[k] = v
            if handle is not None:
                sets["handle"] = json.dumps(handle, sort_keys=True)
            c.execute(f"UPDATE jobs SET {', '.join(k + '=?' for k in sets)} WHERE id=?", (*sets.values(), job_id))
            if state is not None and (state != row["state"] or (message or "") != row["message"]):
                c.execute("INSERT INTO job_events VALUES (?,?,?,?)", (job_id, now, state, message or ""))
        return self.get(job_id)

    def delete(self, job_id: str) -> None:
        with self._tx() as c:
            c.execute("DELETE FROM job_events WHERE job_id=?", (job_id,))
            c.execute("DELETE FROM jobs WHERE id=?", (job_id,))

    def get(self, ref: str) -> JobRecord:
        """A job by id, id prefix, or native id.

        Raises:
            NotFound: no such job. UsageError: the prefix matches several jobs.
        """
        rows = self._conn.execute(
            "SELECT * FROM jobs WHERE id=? OR native_id=? OR submission_id=?", (ref, ref, ref)).fetchall()
        if not rows:
            rows = self._conn.execute("SELECT * FROM jobs WHERE id LIKE ?", (ref.replace("%", "") + "%",)).fetchall()
        if not rows:
            raise NotFound(f"no job '{ref}' in the records", hint="unijob list shows the jobs submitted from here")
        if len(rows) > 1:
            raise UsageError(f"'{ref}' matches {len(rows)} jobs: {', '.join(r['id'] for r in rows[:5])}")
        rec = self._row(rows[0])
        rec.history = [(r["at"], r["state"], r["message"]) for r in self._conn.execute(
            "SELECT at, state, message FROM job_events WHERE job_id=? ORDER BY at, rowid", (rec.id,))]
        return rec

    def list(self, *, limit: int = 50, target: Optional[str] = None, include_final: bool = True) -> list[JobRecord]:
        q = "SELECT * FROM jobs"
        where, args = [], []
        if target:
            where.append("target=?")
            args.append(target)
        if not include_final:
            where.append("state NOT IN ('SUCCEEDED','FAILED','CANCELLED')")
        if where:
            q += " WHERE " + " AND ".join(where)
        q += " ORDER BY created_at DESC LIMIT ?"
        return [self._row(r) for r in self._conn.execute(q, (*args, limit))]

    @staticmethod
    def _row(r: sqlite3.Row) -> JobRecord:
        d = dict(r)
        d["handle"] = json.loads(d["handle"]) if d.get("handle") else None
        return JobRecord(**d)

    # ---- endpoints --------------------------------------------------------------------------

    def put_endpoint(self, name: str, target: str, state: str, handle: dict[str, Any]) -> None:
        now = time.time()
        with self._tx() as c:
            c.execute(
                "INSERT INTO endpoints (name, target, state, created_at, updated_at, handle) VALUES (?,?,?,?,?,?) "
                "ON CONFLICT(name, target) DO UPDATE SET state=excluded.state, updated_at=excluded.updated_at, "
                "handle=excluded.handle", (name, target, state, now, now, json.dumps(handle, sort_keys=True)))

    def endpoints(self) -> list[dict[str, Any]]:
        return [{**dict(r), "handle": json.loads(r["handle"]) if r["handle"] else None}
                for r in self._conn.execute("SELECT * FROM endpoints ORDER BY created_at DESC")]

    def endpoint(self, name: str, target: Optional[str] = None) -> dict[str, Any]:
        rows = [e for e in self.endpoints() if e["name"] == name and (target is None or e["target"] == target)]
        if not rows:
            raise NotFound(f"no endpoint '{name}' in the records", hint="unijob endpoints lists them")
        if len(rows) > 1:
            raise UsageError(f"endpoint '{name}' exists on several targets; pass --target")
        return rows[0]

    def delete_endpoint(self, name: str, target: str) -> None:
        with self._tx() as c:
            c.execute("DELETE FROM endpoints WHERE name=? AND target=?", (name, target))


def _alive(pid: Optional[int]) -> bool:
    """Whether process ``pid`` exists on this machine (None: unknown owner, treated as gone)."""
    if not pid:
        return False
    if pid == os.getpid():
        return False  # this very process is retrying its own submission
    return pid_exists(pid)
