"""The outputs of a run as a comparable value, for the tests that check two runs wrote the same archive."""

from __future__ import annotations

import hashlib
from pathlib import Path


def tree(root: Path) -> dict[str, str]:
    """Relative path -> SHA-256 of every output file under ``root`` (its ``.veil`` folder left out)."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and ".veil" not in p.relative_to(root).parts
    }
