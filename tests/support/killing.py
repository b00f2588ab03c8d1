"""Killing a `veil run` driver mid-run, for the resume tests (test_engine.py, test_counters.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path


def processes_naming(text: str) -> list[int]:
    """Processes whose command line holds ``text`` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if text in (entry / "cmdline").read_bytes().decode(errors="replace"):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def kill_mid_run(command: list[str], dst: Path, parts: int = 10) -> None:
    """Starts ``command`` (a ``veil run`` into ``dst``), SIGKILLs the driver once ``parts`` audit parts exist,
    and asserts that no process of the run (pool worker, manager) outlives it."""
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    audit_parts = dst / ".veil" / "audit"
    deadline = time.time() + 60
    while time.time() < deadline and len(list(audit_parts.glob("part-*.parquet"))) < parts:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.time() + 10
    while processes_naming(str(dst)) and time.time() < deadline:
        time.sleep(0.05)
    assert not processes_naming(str(dst)), "a worker or the manager outlived its killed driver"
