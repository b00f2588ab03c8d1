"""Sending a de-identified folder (a run's DST) to a destination, resumably: what the audit lists as written,
less what this destination confirmed before (``DST/.veil/push/DIGEST.sent``, one confirmed path per line)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import blake3

from veil.net.config import Destination
from veil.net.queue import JobQueue
from veil.net.senders import SendError, send_files

__all__ = ["PushResult", "push_folder"]


@dataclass
class PushResult:
    sent: int = 0
    already: int = 0
    total: int = 0
    error: str = ""  # the destination's refusal (no values); the rest is sent by the next push


def push_folder(root: Path, dest: Destination, label: str, calling_ae: str = "VEIL") -> PushResult:
    """Sends every output ``root``'s audit lists as written that ``label`` (the destination as the user named
    it) has not confirmed yet."""
    from veil.audit.read import iter_instances

    root = root.resolve()
    files = [root / row["output_path"] for row in iter_instances(root) if row["status"] == "written"]
    log = JobQueue(root / ".veil" / "push" / blake3.blake3(label.encode()).hexdigest()[:32])
    sent = log.sent("push")
    pending = [f for f in files if str(f.relative_to(root)) not in sent]
    result = PushResult(already=len(files) - len(pending), total=len(files))

    def confirmed(path: Path) -> None:
        log.mark_sent("push", str(path.relative_to(root)))
        result.sent += 1

    try:
        send_files(dest, pending, root, confirmed, calling_ae)
    except SendError as exc:
        result.error = str(exc)
    return result
