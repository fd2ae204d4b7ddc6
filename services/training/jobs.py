"""JobStore: training jobs and their event histories, durable in SQLite under FORGEWAY_HOME."""

from __future__ import annotations

import sqlite3
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from google.protobuf import timestamp_pb2

from forgeway.core.enums import FINISHED_STATES
from forgeway.core.pages import JobCursor
from forgeway.v1 import jobs_pb2, train_pb2

from .errors import job_not_found

TERMINAL = FINISHED_STATES

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    created REAL NOT NULL,
    request BLOB NOT NULL,
    record BLOB NOT NULL,
    created_ns INTEGER NOT NULL DEFAULT 0,
    state INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS events (
    job_id TEXT NOT NULL REFERENCES jobs(id),
    sequence INTEGER NOT NULL,
    event BLOB NOT NULL,
    PRIMARY KEY (job_id, sequence)
);
"""
# Listing columns kept beside the record (a jobs.db written before them gets them filled in from the records).
COLUMNS = {"created_ns": "INTEGER NOT NULL DEFAULT 0", "state": "INTEGER NOT NULL DEFAULT 0"}
INDEX = "CREATE INDEX IF NOT EXISTS jobs_newest ON jobs (created_ns DESC, id DESC)"


def source_label(source: train_pb2.DatasetSource) -> str:
    """How a job names its dataset: the uploaded id, the path or hub name, or "inline"."""
    kind = source.WhichOneof("source")
    return "inline" if kind == "inline" else getattr(source, kind) if kind else ""


def _now() -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromNanoseconds(time.time_ns())
    return ts


class JobStore:
    """Jobs and events in one SQLite file. Thread-safe: trainers append from worker threads."""

    def __init__(self, path: Path, on_event: Callable[[jobs_pb2.JobEvent], None] | None = None):
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        # WAL + NORMAL: a commit survives a crash of the process (not of the machine) without an fsync per event
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)
        self._migrate()
        self._lock = threading.Lock()
        self.on_event = on_event

    def _migrate(self) -> None:
        """Add the listing columns to a jobs.db from before them, filled in from each job's record."""
        present = {row[1] for row in self._db.execute("PRAGMA table_info(jobs)")}
        missing = [name for name in COLUMNS if name not in present]
        if missing:
            self._db.execute("BEGIN")
            for name in missing:
                self._db.execute(f"ALTER TABLE jobs ADD COLUMN {name} {COLUMNS[name]}")
            for job_id, record in self._db.execute("SELECT id, record FROM jobs").fetchall():
                job = jobs_pb2.Job.FromString(record)
                self._db.execute("UPDATE jobs SET created_ns = ?, state = ? WHERE id = ?",
                                 (job.created.ToNanoseconds(), job.state, job_id))
            self._db.execute("COMMIT")
        self._db.execute(INDEX)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def create(self, request: train_pb2.TrainRequest, backend: str, method: str) -> jobs_pb2.Job:
        now = _now()
        job = jobs_pb2.Job(
            id=f"job-{uuid.uuid4().hex[:16]}",
            state=jobs_pb2.JOB_STATE_QUEUED,
            backend=backend,
            base_model=request.base_model,
            method=method,
            created=now,
            updated=now,
            dataset=source_label(request.dataset),
            eval_dataset=source_label(request.eval_dataset) if request.HasField("eval_dataset") else "",
            suffix=request.output.suffix,
        )
        hp = request.hyperparameters
        for name in ("epochs", "batch_size", "learning_rate", "seed"):
            if hp.HasField(name):
                setattr(job, name, getattr(hp, name))
        with self._lock:
            self._db.execute(
                "INSERT INTO jobs (id, created, request, record, created_ns, state) VALUES (?, ?, ?, ?, ?, ?)",
                (job.id, now.ToNanoseconds() / 1e9, request.SerializeToString(), job.SerializeToString(),
                 now.ToNanoseconds(), job.state),
            )
        self.append(job.id, state=jobs_pb2.StateChange(state=jobs_pb2.JOB_STATE_QUEUED, message="queued"))
        return self.get(job.id)

    def append(self, job_id: str, **kind) -> jobs_pb2.JobEvent:
        """Record one event (state=, progress=, log=, checkpoint=, fallback= or artifact=) and update the job."""
        with self._lock:
            job = self._get(job_id)
            event = jobs_pb2.JobEvent(job_id=job_id, sequence=job.last_sequence + 1, time=_now(), **kind)
            job.last_sequence = event.sequence
            job.updated.CopyFrom(event.time)
            which = event.WhichOneof("kind")
            if which == "state":
                job.state = event.state.state
                if event.state.state == jobs_pb2.JOB_STATE_FAILED:
                    job.error = event.state.message
            elif which == "progress":
                job.progress.CopyFrom(event.progress)
            elif which == "artifact":
                job.artifact.CopyFrom(event.artifact)
            elif which == "fallback":
                job.backend = event.fallback.used
            self._db.execute("BEGIN")
            self._db.execute(
                "INSERT INTO events (job_id, sequence, event) VALUES (?, ?, ?)",
                (job_id, event.sequence, event.SerializeToString()),
            )
            self._db.execute("UPDATE jobs SET record = ?, state = ? WHERE id = ?",
                             (job.SerializeToString(), job.state, job_id))
            self._db.execute("COMMIT")
        if self.on_event:
            self.on_event(event)
        return event

    def _get(self, job_id: str) -> jobs_pb2.Job:
        row = self._db.execute("SELECT record FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise job_not_found(job_id)
        return jobs_pb2.Job.FromString(row[0])

    def get(self, job_id: str) -> jobs_pb2.Job:
        with self._lock:
            return self._get(job_id)

    def request(self, job_id: str) -> train_pb2.TrainRequest:
        with self._lock:
            row = self._db.execute("SELECT request FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise job_not_found(job_id)
        return train_pb2.TrainRequest.FromString(row[0])

    def list(self, state: int = 0, size: int = 100, after: JobCursor | None = None) -> tuple[list[jobs_pb2.Job], bool]:
        """A page of jobs, newest first (creation time, then id): at most `size` of them below `after`, only those
        in `state` when it is set; and whether more follow."""
        where, args = [], []
        if state:
            where.append("state = ?")
            args.append(state)
        if after is not None:
            where.append("(created_ns < ? OR (created_ns = ? AND id < ?))")
            args += [after.created_ns, after.created_ns, after.job_id]
        query = ("SELECT record FROM jobs" + (" WHERE " + " AND ".join(where) if where else "")
                 + " ORDER BY created_ns DESC, id DESC LIMIT ?")
        with self._lock:
            rows = self._db.execute(query, (*args, size + 1)).fetchall()
        return [jobs_pb2.Job.FromString(r[0]) for r in rows[:size]], len(rows) > size

    def events(self, job_id: str, after: int = 0) -> list[jobs_pb2.JobEvent]:
        with self._lock:
            self._get(job_id)
            rows = self._db.execute(
                "SELECT event FROM events WHERE job_id = ? AND sequence > ? ORDER BY sequence", (job_id, after)
            ).fetchall()
        return [jobs_pb2.JobEvent.FromString(r[0]) for r in rows]

    def event_page(self, job_id: str, size: int, after: int | None = None,
                   newest_first: bool = False) -> tuple[list[jobs_pb2.JobEvent], bool]:
        """At most `size` events of a job, continuing after sequence `after` in the order asked for (None: from the
        first, or from the newest); and whether more follow."""
        order = "DESC" if newest_first else "ASC"
        bound = "" if after is None else (" AND sequence < ?" if newest_first else " AND sequence > ?")
        with self._lock:
            self._get(job_id)
            rows = self._db.execute(
                f"SELECT event FROM events WHERE job_id = ?{bound} ORDER BY sequence {order} LIMIT ?",
                (job_id, *(() if after is None else (after,)), size + 1),
            ).fetchall()
        return [jobs_pb2.JobEvent.FromString(r[0]) for r in rows[:size]], len(rows) > size

    def unfinished(self) -> list[jobs_pb2.Job]:
        """Jobs a previous process left queued or running, oldest first."""
        marks = ", ".join("?" * len(TERMINAL))
        with self._lock:
            rows = self._db.execute(f"SELECT record FROM jobs WHERE state NOT IN ({marks}) ORDER BY created_ns, id",
                                    tuple(TERMINAL)).fetchall()
        return [jobs_pb2.Job.FromString(r[0]) for r in rows]
