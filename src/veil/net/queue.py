"""Persistent per-destination queues: one job file per (destination, study), and a log of what was sent.

    WORK/queue/DEST/STUDY.json    {"study", "state": pending|done|dead, "attempts", "next", "error", "created"}
    WORK/queue/DEST/STUDY.sent    one output path (relative to WORK/out/STUDY) per line, fsynced per file

A job is written (atomically) before the study's originals leave the spool, so a crash loses none. A file is
logged as sent only after the destination confirmed it; a crash between the two resends that one file, which a
PACS stores once (same SOP Instance UID) and a folder replaces: every acknowledged instance arrives, once. A job
that fails waits (exponential backoff, :class:`veil.net.config.RetryPolicy`) and after the last attempt is a
dead letter, kept with its outputs for a person to retry or drop. Errors are recorded as their type and a
message without values.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from veil.net.spool import append_durable, write_durable

__all__ = ["Job", "JobQueue"]

STATES = ("pending", "done", "dead")


@dataclass
class Job:
    study: str
    state: str = "pending"
    attempts: int = 0
    next: float = 0.0
    error: str = ""
    created: float = 0.0


class JobQueue:
    """The jobs of one destination."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)

    def _path(self, study: str) -> Path:
        return self.folder / f"{study}.json"

    def put(self, study: str) -> Job:
        job = Job(study, created=time.time())
        self.save(job)
        return job

    def save(self, job: Job) -> None:
        write_durable(self._path(job.study), json.dumps(asdict(job), sort_keys=True).encode())

    def get(self, study: str) -> Job | None:
        try:
            data = json.loads(self._path(study).read_text())
        except (OSError, ValueError):
            return None
        return Job(**{k: data[k] for k in ("study", "state", "attempts", "next", "error", "created") if k in data})

    def jobs(self) -> list[Job]:
        out = []
        for path in sorted(self.folder.glob("*.json")):
            job = self.get(path.stem)
            if job is not None:
                out.append(job)
        return out

    def due(self, now: float | None = None) -> list[Job]:
        moment = time.time() if now is None else now
        return [j for j in self.jobs() if j.state == "pending" and j.next <= moment]

    def remove(self, study: str) -> None:
        for path in (self._path(study), self.folder / f"{study}.sent"):
            path.unlink(missing_ok=True)

    def sent(self, study: str) -> set[str]:
        try:
            return {line for line in (self.folder / f"{study}.sent").read_text().splitlines() if line}
        except OSError:
            return set()

    def mark_sent(self, study: str, relpath: str) -> None:
        append_durable(self.folder / f"{study}.sent", relpath)

    def dead(self) -> list[Job]:
        return [j for j in self.jobs() if j.state == "dead"]

    def retry(self, study: str) -> bool:
        """A dead letter back to pending, its attempts counted from zero (``veil serve retry``)."""
        job = self.get(study)
        if job is None or job.state != "dead":
            return False
        job.state, job.attempts, job.next, job.error = "pending", 0, 0.0, ""
        self.save(job)
        return True

    def drop(self, study: str) -> bool:
        """A dead letter given up for this destination (``veil serve drop``): its job and log go."""
        job = self.get(study)
        if job is None or job.state != "dead":
            return False
        self.remove(study)
        return True

    def depths(self) -> dict[str, int]:
        counts = dict.fromkeys(STATES, 0)
        for job in self.jobs():
            counts[job.state] = counts.get(job.state, 0) + 1
        return counts
