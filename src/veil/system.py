"""Low-level helpers every layer may use: a process that dies with its parent (the engine's pool, the key
server), the lazy names of a package (PEP 562), a logger that imports ``logging`` at its first message, veil's
per-user cache folder, the login name recorded as a default operator, and one sync of a whole file system."""

from __future__ import annotations

import contextlib
import functools
import importlib
import os
import signal
import stat
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["LazyLogger", "cache_home", "die_with_parent", "is_private", "lazy_exports", "login_name", "read_private",
           "sync_filesystem", "write_private"]


def die_with_parent() -> None:
    """A pool process ends when the process that started it does (Linux ``PR_SET_PDEATHSIG``): a driver killed
    with SIGKILL leaves no worker behind to go on writing into DST while ``--resume`` runs."""
    parent = os.getppid()
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return  # not Linux: the pool's own checks still stop idle workers once the driver is gone
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def lazy_exports(package: str, homes: Mapping[str, str], namespace: dict[str, Any]
                 ) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """A package's ``__getattr__`` and ``__dir__`` (PEP 562) for names that live in its modules and load on first
    use: ``homes`` maps each name to the module (relative to ``package``) that defines it; a name once loaded
    is kept in ``namespace`` (the package's globals), so it costs nothing the second time."""

    def __getattr__(name: str) -> Any:
        home = homes.get(name)
        if home is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{home}"), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(homes))

    return __getattr__, __dir__


def cache_home() -> Path | None:
    """veil's per-user cache (what a run need not work out again: compiled recipes, the core's digest):
    ``$VEIL_CACHE_DIR``, else ``$XDG_CACHE_HOME/veil``, else ``~/.cache/veil``; None when ``VEIL_NO_CACHE`` is
    set (not to 0). Nothing in it is needed: a cache that is missing, damaged or not the user's own is ignored."""
    from pathlib import Path  # not at import: ``import veil`` stays light

    if os.environ.get("VEIL_NO_CACHE", "") not in ("", "0"):
        return None
    base = os.environ.get("VEIL_CACHE_DIR")
    if not base:
        xdg = os.environ.get("XDG_CACHE_HOME")
        base = os.path.join(xdg, "veil") if xdg else os.path.join(os.path.expanduser("~"), ".cache", "veil")
    return Path(base)


def is_private(st: os.stat_result, kind: int) -> bool:
    """Of the file type ``kind`` (``stat.S_IFREG``, ``stat.S_IFDIR``), the user's own and writable by no one
    else: a cache entry that may be trusted as the user's own files are."""
    return stat.S_IFMT(st.st_mode) == kind and st.st_uid == os.geteuid() and not st.st_mode & 0o022


def read_private(path: Path, limit: int) -> bytes | None:
    """Up to ``limit`` bytes of a cache file, or None where it is missing or unreadable, or where it or its
    folder is not the user's own and private (:func:`is_private`; a symlink is not followed)."""
    try:
        if not is_private(os.stat(path.parent), stat.S_IFDIR):
            return None
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as fh:
        try:
            return fh.read(limit) if is_private(os.fstat(fh.fileno()), stat.S_IFREG) else None
        except OSError:
            return None


def write_private(path: Path, data: bytes) -> bool:
    """Writes a cache file whole (mode 0600, under a temporary name beside it, then renamed), its folder made
    (mode 0700) where missing. False, writing nothing, where the folder is not the user's own and private or
    cannot be written: a cache is never needed, so the caller goes on without it."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not is_private(os.stat(path.parent), stat.S_IFDIR):
            return False
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(temporary, path)
    except OSError:
        with contextlib.suppress(OSError):
            temporary.unlink()
        return False
    return True


class LazyLogger:
    """A module's logger whose ``logging`` package is imported at its first message, not at start-up (4 ms a
    process): ``log = LazyLogger(__name__)``, then ``log.warning(...)`` as with ``logging.getLogger``."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __getattr__(self, attribute: str) -> Any:
        import logging

        return getattr(logging.getLogger(self.name), attribute)


def login_name() -> str:
    """The user's login name (the default operator of runs, purges and reviews); "unknown" where none is set."""
    import getpass

    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return "unknown"


@functools.cache
def _syncfs() -> tuple[Any, Any] | None:
    """libc's ``syncfs`` and ``ctypes.get_errno``, or None where there is no such call."""
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).syncfs, ctypes.get_errno
    except (OSError, AttributeError):
        return None


def sync_filesystem(path: str | os.PathLike[str]) -> None:
    """Everything written to the file system that holds ``path`` reaches its disk: Linux ``syncfs(2)``, one call
    for a whole shard's outputs (``sync(2)`` where there is none). An error is raised as OSError."""
    found = _syncfs()
    fd = os.open(path, os.O_RDONLY)
    try:
        if found is None:
            os.sync()
            return
        syncfs, get_errno = found
        if syncfs(fd) != 0:
            code = get_errno()
            raise OSError(code, os.strerror(code), os.fspath(path))
    finally:
        os.close(fd)
