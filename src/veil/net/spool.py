"""The node's work folder: a durable spool of received instances, grouped by study, and the study pipeline's
states as folders, so a crash or ``kill -9`` at any point is picked up on restart without losing an
acknowledged instance.

    WORK/spool/incoming/STUDY/SOP.dcm     received, fsynced, renamed into place BEFORE the C-STORE success
    WORK/spool/processing/STUDY/          a complete study being de-identified (redone whole after a crash)
    WORK/out/STUDY/                       its de-identified outputs (study layout) and their .veil audit
    WORK/queue/DEST/STUDY.json            one job per destination: pending, done or dead (see veil.net.queue)
    WORK/audit/STUDY/                     the audit of a study once every destination has it
    WORK/quarantine/DIGEST.dcm(.json)     a C-STORE payload refused as malformed, with its reason

STUDY and SOP are keyed digests of the original UIDs (paths name no identifier). Every move between states is
one ``rename``; every file is written under a temporary name, fsynced, renamed, and its folder fsynced.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from pathlib import Path

import blake3

__all__ = ["Spool", "append_durable", "fsync_dir", "write_durable"]


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def append_durable(path: Path, line: str) -> None:
    """One line appended to ``path`` (created mode 0600) and fsynced: the logs that say what is done."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.write(fd, (line + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def write_durable(target: Path, data: bytes, mode: int = 0o600, sync: bool = True) -> None:
    """``data`` at ``target``: a temporary file beside it, fsync, rename, fsync of the folder. Without ``sync``
    only the temporary file and the rename (the caller syncs a whole batch before it counts on them)."""
    tmp = target.with_name(f".{target.name}.{os.getpid()}-{threading.get_ident()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, target)
    if sync:
        fsync_dir(target.parent)


class Spool:
    """The folders of one node and the moves between them (thread-safe)."""

    def __init__(self, work: Path, digest_key: bytes | None) -> None:
        self.work = work
        self._key = digest_key
        self.incoming = work / "spool" / "incoming"
        self.processing = work / "spool" / "processing"
        self.out = work / "out"
        self.queue = work / "queue"
        self.audit = work / "audit"
        self.quarantine = work / "quarantine"
        for folder in (self.incoming, self.processing, self.out, self.queue, self.audit, self.quarantine):
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(work, 0o700)
        self._lock = threading.Lock()
        self._inflight: dict[str, int] = {}
        self._last: dict[str, float] = {}

    def digest(self, value: str) -> str:
        raw = value.strip("\0 ").encode()
        hashed = blake3.blake3(raw, key=self._key) if self._key is not None else blake3.blake3(raw)
        return hashed.hexdigest()[:40]

    def receive(self, study_uid: str, sop_uid: str, data: bytes, sync: bool = True) -> Path:
        """Writes one received instance into its study's incoming folder, durably unless ``sync`` is False (the
        caller then syncs the study before it counts on it); returns its path."""
        study, sop = self.digest(study_uid), self.digest(sop_uid)
        with self._lock:
            folder = self.incoming / study
            folder.mkdir(exist_ok=True, mode=0o700)
            self._inflight[study] = self._inflight.get(study, 0) + 1
        try:
            target = folder / f"{sop}.dcm"
            write_durable(target, data, sync=sync)
            return target
        finally:
            with self._lock:
                self._inflight[study] -= 1
                self._last[study] = time.monotonic()

    def quarantine_payload(self, data: bytes, reason: str) -> str:
        digest = blake3.blake3(data).hexdigest()[:40]
        write_durable(self.quarantine / f"{digest}.dcm", data)
        write_durable(self.quarantine / f"{digest}.json", json.dumps({"digest": digest, "reason": reason}).encode())
        return digest

    def complete_studies(self, quiet_seconds: float, force: bool = False) -> list[str]:
        """Moves every study quiet for ``quiet_seconds`` (all with ``force``) from incoming to processing."""
        moved = []
        now = time.monotonic()
        with self._lock:
            for folder in sorted(p for p in self.incoming.iterdir() if p.is_dir()):
                study = folder.name
                if self._inflight.get(study, 0):
                    continue
                last = self._last.get(study)
                if last is None:  # found on disk after a restart: quiet since its last file
                    last = now - (time.time() - folder.stat().st_mtime)
                if not force and now - last < quiet_seconds:
                    continue
                if not any(folder.glob("*.dcm")):
                    shutil.rmtree(folder, ignore_errors=True)
                    continue
                target = self.processing / study
                if target.exists():  # a later batch of a study still being processed: wait for it
                    continue
                os.replace(folder, target)
                self._last.pop(study, None)
                moved.append(study)
            if moved:
                fsync_dir(self.incoming)
                fsync_dir(self.processing)
        return moved

    def counts(self) -> dict[str, int]:
        spooled = sum(1 for _ in self.incoming.glob("*/*.dcm"))
        return {"spooled": spooled, "studies_receiving": sum(1 for p in self.incoming.iterdir() if p.is_dir()),
                "studies_processing": sum(1 for p in self.processing.iterdir() if p.is_dir()),
                "quarantined": sum(1 for _ in self.quarantine.glob("*.json"))}
