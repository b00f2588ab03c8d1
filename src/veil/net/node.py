"""``veil serve``: a Storage SCP that spools what it receives, de-identifies each complete study through the same
engine as ``veil run`` and forwards it to every destination, each with its own persistent queue.

Threads: pynetdicom's server (one per association) writes each instance durably to the spool *before* it
answers success (:class:`veil.net.spool.Spool`); the **study loop** moves quiet studies to processing and runs
:func:`veil.api.deidentify` on each (study layout, the node's recipe and key: the same outputs as ``veil run``
on the same files), queues a job per destination, then drops the originals; one **sender** per destination
works its queue (retries with backoff, dead letters). A health endpoint on 127.0.0.1 answers counts only
(``GET /health``); ``POST /trigger`` with the token of ``WORK/control.token`` completes every study now.

Restart after a crash: studies found in processing are redone whole (the engine writes the same bytes), jobs
found pending are sent on from what their ``.sent`` log says is not yet there.
"""

from __future__ import annotations

import hmac
import json
import logging
import secrets
import shutil
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from veil.errors import MalformedDicom, VeilError
from veil.net.config import NodeConfig
from veil.net.queue import JobQueue
from veil.net.scp import received_bytes, start_storage_scp
from veil.net.senders import SendError, send_files
from veil.net.spool import Spool, fsync_dir, write_durable

__all__ = ["Node"]

log = logging.getLogger(__name__)

# C-STORE failure statuses (PS3.4 B.2.3): the dataset does not match the SOP class / cannot be understood;
# out of resources; refused (not authorized).
_CANNOT_UNDERSTAND = 0xC000
_OUT_OF_RESOURCES = 0xA700
_NOT_AUTHORIZED = 0x0124


def finish_study(spool: Spool, queues: list[JobQueue], study: str) -> bool:
    """Keeps a study's audit and removes its outputs once no destination's job is pending or dead (a job
    dropped by ``veil serve drop`` is gone); False while one still is."""
    jobs = [job for job in (q.get(study) for q in queues) if job is not None]
    if any(job.state != "done" for job in jobs):
        return False
    out = spool.out / study
    audit = spool.audit / study
    if (out / ".veil").is_dir() and not audit.exists():
        shutil.move(str(out / ".veil"), str(audit))
    shutil.rmtree(out, ignore_errors=True)
    for queue in queues:
        queue.remove(study)
    return True


class Node:
    """One running node (see the module docstring). ``start()`` returns once it listens; ``stop()`` ends it."""

    def __init__(self, config: NodeConfig) -> None:
        self.config = config
        self.key = None
        if config.key is not None:
            from veil.keys import load_key

            self.key = load_key(config.key)
        from veil.recipes import compile_recipe

        self.compiled = compile_recipe(config.recipe)
        self.spool = Spool(config.work, self.key.subkey("audit") if self.key is not None else None)
        self.queues = {d.name: JobQueue(self.spool.queue / d.name) for d in config.destinations}
        self.counters: Counter[str] = Counter()
        self._counter_lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._server: Any = None
        self._health: ThreadingHTTPServer | None = None
        self.port = config.port
        self.health_port = config.health_port
        self._force = threading.Event()
        self.control_token = secrets.token_urlsafe(32)  # POST /trigger needs it (the file is the node user's)

    def count(self, name: str, n: int = 1) -> None:
        with self._counter_lock:
            self.counters[name] += n

    # --- receive ------------------------------------------------------------------------------------------

    def _handle_store(self, event: Any) -> int:
        requestor = event.assoc.requestor
        if not self.config.allowed(str(requestor.ae_title), str(requestor.address)):
            self.count("refused")
            return _NOT_AUTHORIZED
        from veil.core._core import peek

        try:
            data = received_bytes(event)
        except Exception:
            self.count("failed")
            return _CANNOT_UNDERSTAND

        try:
            info = peek(data, "c-store")
            study, sop = str(info.get("study_instance_uid") or ""), str(info.get("sop_instance_uid") or "")
            if not study or not sop:
                raise MalformedDicom("c-store", 0, "no Study or SOP Instance UID")
        except MalformedDicom as exc:
            self.spool.quarantine_payload(data, exc.reason if hasattr(exc, "reason") else str(exc))
            self.count("malformed")
            log.warning("refused a malformed C-STORE dataset (quarantined)")
            return _CANNOT_UNDERSTAND
        try:
            self.spool.receive(study, sop, data)
        except OSError as exc:
            self.count("failed")
            log.error("cannot spool a received instance: %s", exc.strerror)
            return _OUT_OF_RESOURCES
        self.count("received")
        return 0x0000

    def _start_scp(self) -> None:
        tls = None
        if self.config.tls is not None:
            from veil.net.tls import server_context

            tls = server_context(self.config.tls)
        self._server = start_storage_scp(self.config.ae_title, [a.ae_title for a in self.config.allow],
                                         (self.config.host, self.config.port), self._handle_store, tls=tls,
                                         verification=True, max_associations=32)
        self.port = self._server.server_address[1]

    # --- de-identify --------------------------------------------------------------------------------------

    def _recover(self) -> None:
        """After a crash: a study half de-identified is redone from its originals (its jobs removed first)."""
        for folder in sorted(p for p in self.spool.processing.iterdir() if p.is_dir()):
            for queue in self.queues.values():
                queue.remove(folder.name)
            shutil.rmtree(self.spool.out / folder.name, ignore_errors=True)

    def process(self, study: str) -> None:
        """De-identifies one complete study, queues it for every destination, then drops its originals."""
        from veil.api import deidentify

        src = self.spool.processing / study
        out = self.spool.out / study
        shutil.rmtree(out, ignore_errors=True)
        try:
            summary = deidentify(src, out, recipe=self.compiled, key=self.key, workers=self.config.workers,
                                      layout="study", operator=f"veil serve {self.config.ae_title}")
        except VeilError as exc:
            self.count("studies_failed")
            log.error("study %s: de-identification failed (%s); kept in processing", study[:12], type(exc).__name__)
            raise
        totals = summary.totals
        written = totals.written if totals is not None else 0
        self.count("deidentified", written)
        self.count("quarantined_in_run", totals.quarantined if totals is not None else 0)
        for queue in self.queues.values():
            queue.put(study)
        shutil.rmtree(src)
        fsync_dir(self.spool.processing)
        self.count("studies")
        log.info("study %s: %d instances de-identified, queued for %d destinations", study[:12],
                 written, len(self.queues))

    def _study_loop(self) -> None:
        while not self._stop.is_set():
            force = self._force.is_set()
            self._force.clear()
            self.spool.complete_studies(self.config.quiet_seconds, force=force)
            for folder in sorted(p for p in self.spool.processing.iterdir() if p.is_dir()):
                if self._stop.is_set():
                    return
                try:
                    self.process(folder.name)
                except (VeilError, OSError):
                    self._stop.wait(5.0)
            self._stop.wait(0.2)

    def trigger(self) -> None:
        """Treats every study being received as complete now (the explicit trigger)."""
        self._force.set()

    # --- forward ------------------------------------------------------------------------------------------

    def _send_loop(self, name: str) -> None:
        dest = next(d for d in self.config.destinations if d.name == name)
        queue = self.queues[name]
        while not self._stop.is_set():
            for job in queue.due():
                if self._stop.is_set():
                    return
                root = self.spool.out / job.study
                sent = queue.sent(job.study)
                files = sorted(p for p in root.rglob("*.dcm") if ".veil" not in p.relative_to(root).parts
                               and str(p.relative_to(root)) not in sent)

                def confirmed(path: Path, study: str = job.study, base: Path = root) -> None:
                    queue.mark_sent(study, str(path.relative_to(base)))
                    self.count(f"forwarded.{name}")

                try:
                    send_files(dest, files, root, confirmed, self.config.ae_title)
                except (SendError, OSError) as exc:
                    job.attempts += 1
                    job.error = str(exc) if isinstance(exc, SendError) else f"OS error {exc.errno}"
                    if job.attempts >= self.config.retry.attempts:
                        job.state = "dead"
                        self.count(f"dead.{name}")
                        log.error("%s: study %s is a dead letter after %d attempts", name, job.study[:12],
                                  job.attempts)
                    else:
                        job.next = time.time() + self.config.retry.delay(job.attempts)
                        self.count(f"retried.{name}")
                        log.warning("%s: study %s not delivered (attempt %d): %s", name, job.study[:12],
                                    job.attempts, job.error)
                    queue.save(job)
                    continue
                job.state, job.error = "done", ""
                queue.save(job)
                self._finish(job.study)
            self._stop.wait(0.2)

    def _finish(self, study: str) -> None:
        """Once every destination has a study (or dropped it): its audit is kept, its outputs go."""
        finish_study(self.spool, list(self.queues.values()), study)

    # --- health -------------------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        with self._counter_lock:
            counters = dict(self.counters)
        return {
            "ae_title": self.config.ae_title, "port": self.port,
            "received": counters.get("received", 0), "refused": counters.get("refused", 0),
            "malformed": counters.get("malformed", 0), "deidentified": counters.get("deidentified", 0),
            "studies": counters.get("studies", 0), **self.spool.counts(),
            # instances this node could not spool (out of resources), studies the engine could not run, and
            # instances the run itself quarantined (listed in the study's audit)
            "failed": counters.get("failed", 0), "studies_failed": counters.get("studies_failed", 0),
            "quarantined_in_run": counters.get("quarantined_in_run", 0),
            "forwarded": {n: counters.get(f"forwarded.{n}", 0) for n in self.queues},
            "retried": {n: counters.get(f"retried.{n}", 0) for n in self.queues},
            "queues": {n: q.depths() for n, q in self.queues.items()},
        }

    def _start_health(self) -> None:
        node = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (the http.server name)
                if self.path not in ("/health", "/metrics"):
                    self.send_error(404)
                    return
                body = (json.dumps(node.status(), sort_keys=True) + "\n").encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:  # noqa: N802
                if self.path != "/trigger":
                    self.send_error(404)
                    return
                given = self.headers.get("Authorization", "")
                if not hmac.compare_digest(given.encode(), f"Bearer {node.control_token}".encode()):
                    self.send_error(401, "the control token (WORK/control.token) is needed")
                    return
                node.trigger()
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                return  # no access log

        self._health = ThreadingHTTPServer(("127.0.0.1", self.config.health_port), Handler)
        self.health_port = self._health.server_address[1]
        self._spawn(self._health.serve_forever, "health")

    # --- life ---------------------------------------------------------------------------------------------

    def _spawn(self, target: Any, name: str, *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, name=f"veil-node-{name}", daemon=True)
        thread.start()
        self._threads.append(thread)

    def start(self) -> None:
        self._recover()
        self._start_health()
        self._start_scp()
        self._spawn(self._study_loop, "studies")
        for name in self.queues:
            self._spawn(self._send_loop, f"send-{name}", name)
        write_durable(self.config.work / "control.token", self.control_token.encode(), 0o600)
        state = self.config.work / "node.json"
        state.write_text(json.dumps({"port": self.port, "health_port": self.health_port}) + "\n")
        log.info("veil serve: %s listening on %s:%d, health on 127.0.0.1:%d", self.config.ae_title,
                 self.config.host, self.port, self.health_port)

    def stop(self) -> None:
        self._stop.set()
        if self._server is not None:
            self._server.shutdown()
        if self._health is not None:
            self._health.shutdown()
        for thread in self._threads:
            thread.join(timeout=10)

    def wait(self) -> None:
        while not self._stop.wait(1.0):
            pass
