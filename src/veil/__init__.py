"""veil: high-throughput DICOM de-identification.

The Python API (see :mod:`veil.api`)::

    import veil

    key = veil.load_key("project.key")
    summary = veil.deidentify("archive/", "out/", recipe="research", key=key)
    report = veil.verify("archive/", "out/", recipe="research", key=key)

``deidentify`` (a whole archive, as ``veil run``), ``deidentify_file``, ``deidentify_bytes``, ``verify``,
``load_recipe``, ``load_key`` and the error types. The functions are loaded on first use, so importing veil (as
every worker process does) costs no more than the parts it uses.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from veil._version import __version__
from veil.errors import AuditError, KeyError_, MalformedDicom, PlanError, RecipeError, VeilError

if TYPE_CHECKING:
    from veil.api import deidentify, deidentify_bytes, deidentify_file, load_key, load_recipe, verify

__all__ = [
    "__version__",
    "deidentify",
    "deidentify_file",
    "deidentify_bytes",
    "verify",
    "load_recipe",
    "load_key",
    "VeilError",
    "MalformedDicom",
    "RecipeError",
    "KeyError_",
    "PlanError",
    "AuditError",
]

_API = frozenset({"deidentify", "deidentify_file", "deidentify_bytes", "verify", "load_recipe", "load_key"})


def __getattr__(name: str) -> Any:
    """The API functions, imported from :mod:`veil.api` on first use (PEP 562)."""
    if name in _API:
        from veil import api

        value = getattr(api, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'veil' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | _API)
