"""The node's configuration (``veil serve --config node.yml``), checked with clear messages before anything
listens.

    ae_title: VEIL                 # this node's AE title
    host: 127.0.0.1                # where the Storage SCP listens
    port: 11112
    tls: {cert: node.pem, key: node.key, ca: site-ca.pem, require_client_cert: true}   # DICOM TLS (optional)
    allow:                         # calling AEs allowed to store here (AE title and host)
      - {ae_title: PACS, host: 127.0.0.1}
    work: /var/lib/veil-node       # spool, outputs, queues, audit (created; mode 0700)
    recipe: research               # a shipped recipe name or a file
    key: /etc/veil/project.key     # the run key (the same key gives the same pseudonyms as veil run)
    quiet_seconds: 10              # a study is complete this long after its last instance (or on trigger)
    workers: 1                     # de-identification processes per study
    health_port: 8089              # GET http://127.0.0.1:8089/health (counts only, no PHI); 0 = any free port
    retry: {attempts: 8, first_seconds: 2, max_seconds: 300}   # then the job is a dead letter
    destinations:
      - {name: research-pacs, type: dimse, ae_title: RESEARCH, host: 10.0.0.5, port: 2762,
         tls: {ca: site-ca.pem, cert: node.pem, key: node.key}}
      - {name: archive, type: folder, path: /data/deidentified}
      - {name: web, type: stow, url: "https://pacs.example/dicom-web", auth: {bearer_env: STOW_TOKEN}}
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from veil.errors import VeilError
from veil.net.tls import TlsConfig

__all__ = ["Allowed", "ConfigError", "Destination", "NodeConfig", "RetryPolicy", "load_config", "parse_config"]

_AE = re.compile(r"[ -~]{1,16}")  # PS3.5 6.2: AE, 16 characters of the default repertoire
_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
DESTINATION_TYPES = ("dimse", "folder", "stow")


class ConfigError(VeilError):
    """A node configuration that cannot run; the message names the key."""


@dataclass(frozen=True)
class Allowed:
    ae_title: str
    host: str | None = None  # None: any host


@dataclass(frozen=True)
class Destination:
    name: str
    type: str
    ae_title: str = ""
    host: str = ""
    port: int = 0
    path: str = ""
    url: str = ""
    bearer_env: str = ""
    basic_user: str = ""
    basic_password_env: str = ""
    tls: TlsConfig | None = None  # dimse: DICOM TLS to the AE; stow: the CA and client certificate for https


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 8
    first_seconds: float = 2.0
    max_seconds: float = 300.0

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1, 2, ...): exponential, capped."""
        return float(min(self.max_seconds, self.first_seconds * (2 ** max(0, attempt - 1))))


@dataclass(frozen=True)
class NodeConfig:
    ae_title: str
    port: int
    work: Path
    recipe: str
    key: Path | None
    host: str = "127.0.0.1"
    allow: tuple[Allowed, ...] = ()
    quiet_seconds: float = 10.0
    workers: int = 1
    health_port: int = 0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    destinations: tuple[Destination, ...] = ()
    tls: TlsConfig | None = None  # the Storage SCP speaks DICOM TLS only

    def allowed(self, ae_title: str, host: str) -> bool:
        ae = ae_title.strip()
        return any(a.ae_title == ae and (a.host is None or a.host == host) for a in self.allow)


def _need(data: dict[str, Any], key: str, where: str) -> Any:
    if key not in data or data[key] in (None, ""):
        raise ConfigError(f"{where}: missing {key!r}")
    return data[key]


def _ae(value: Any, where: str) -> str:
    text = str(value).strip()
    if not _AE.fullmatch(text) or "\\" in text:
        raise ConfigError(f"{where}: an AE title is 1 to 16 printable characters without backslash")
    return text


def _port(value: Any, where: str, zero: bool = False) -> int:
    try:
        port = int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: a port is a number") from None
    if not (0 if zero else 1) <= port <= 65535:
        raise ConfigError(f"{where}: port {port} out of range")
    return port


def parse_tls(data: Any, where: str, path: Any, server: bool = False) -> TlsConfig | None:
    """The ``tls:`` mapping (cert, key, ca, require_client_cert); files must exist."""
    if data is None:
        return None
    if not isinstance(data, dict):
        raise ConfigError(f"{where}.tls: a mapping (cert, key, ca{', require_client_cert' if server else ''})")
    allowed = {"cert", "key", "ca"} | ({"require_client_cert"} if server else set())
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ConfigError(f"{where}.tls: unknown key {unknown[0]!r}")
    files = {}
    for name in ("cert", "key", "ca"):
        if data.get(name):
            files[name] = path(data[name])
            if not files[name].is_file():
                raise ConfigError(f"{where}.tls.{name}: {files[name]} is not a file")
    if server and "cert" not in files:
        raise ConfigError(f"{where}.tls: a listening node needs cert (and key)")
    if "key" in files and "cert" not in files:
        raise ConfigError(f"{where}.tls: key without cert")
    require = bool(data.get("require_client_cert", False))
    if require and "ca" not in files:
        raise ConfigError(f"{where}.tls: require_client_cert needs ca (the CA that signs the clients)")
    return TlsConfig(files.get("cert"), files.get("key"), files.get("ca"), require)


def _destination(data: Any, index: int, path: Any) -> Destination:
    where = f"destinations[{index}]"
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: a mapping with name and type")
    name, kind = str(_need(data, "name", where)), str(_need(data, "type", where))
    if not _NAME.fullmatch(name):
        raise ConfigError(f"{where}: name is letters, digits, '.', '_' or '-'")
    if kind not in DESTINATION_TYPES:
        raise ConfigError(f"{where}: type is one of {', '.join(DESTINATION_TYPES)}")
    if kind == "dimse":
        return Destination(name, kind, ae_title=_ae(_need(data, "ae_title", where), where),
                           host=str(_need(data, "host", where)), port=_port(_need(data, "port", where), where),
                           tls=parse_tls(data.get("tls"), where, path))
    if kind == "folder":
        return Destination(name, kind, path=str(_need(data, "path", where)))
    auth = data.get("auth") or {}
    if not isinstance(auth, dict):
        raise ConfigError(f"{where}: auth is a mapping (bearer_env, or basic_user and basic_password_env)")
    url = str(_need(data, "url", where))
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"{where}: url is http:// or https://")
    return Destination(name, kind, url=url.rstrip("/"), bearer_env=str(auth.get("bearer_env", "")),
                       basic_user=str(auth.get("basic_user", "")),
                       basic_password_env=str(auth.get("basic_password_env", "")),
                       tls=parse_tls(data.get("tls"), where, path))


def parse_config(data: Any, base: Path | None = None) -> NodeConfig:
    """A :class:`NodeConfig` from parsed YAML; relative paths are taken from ``base``."""
    if not isinstance(data, dict):
        raise ConfigError("node configuration: a mapping")
    known = {"ae_title", "host", "port", "allow", "work", "recipe", "key", "quiet_seconds", "workers", "health_port",
             "retry", "destinations", "tls"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"node configuration: unknown key {unknown[0]!r}")

    def path(value: Any) -> Path:
        p = Path(os.path.expanduser(str(value)))
        return p if p.is_absolute() or base is None else base / p

    allow = []
    for i, entry in enumerate(data.get("allow") or []):
        if not isinstance(entry, dict):
            raise ConfigError(f"allow[{i}]: a mapping with ae_title (and host)")
        allow.append(Allowed(_ae(_need(entry, "ae_title", f"allow[{i}]"), f"allow[{i}]"),
                             str(entry["host"]) if entry.get("host") else None))
    if not allow:
        raise ConfigError("allow: name at least one calling AE (an open node accepts anyone's data)")
    retry = data.get("retry") or {}
    if not isinstance(retry, dict):
        raise ConfigError("retry: a mapping (attempts, first_seconds, max_seconds)")
    try:
        policy = RetryPolicy(int(retry.get("attempts", 8)), float(retry.get("first_seconds", 2.0)),
                             float(retry.get("max_seconds", 300.0)))
        quiet = float(data.get("quiet_seconds", 10.0))
        workers = int(data.get("workers", 1))
    except (TypeError, ValueError):
        raise ConfigError("retry, quiet_seconds and workers are numbers") from None
    if policy.attempts < 1 or policy.first_seconds <= 0 or quiet < 0 or workers < 1:
        raise ConfigError("retry.attempts >= 1, retry.first_seconds > 0, quiet_seconds >= 0, workers >= 1")
    destinations = tuple(_destination(d, i, path) for i, d in enumerate(data.get("destinations") or []))
    if not destinations:
        raise ConfigError("destinations: name at least one (dimse, folder or stow)")
    if len({d.name for d in destinations}) != len(destinations):
        raise ConfigError("destinations: names must differ")
    return NodeConfig(
        ae_title=_ae(_need(data, "ae_title", "node"), "ae_title"), port=_port(_need(data, "port", "node"), "port", True),
        work=path(_need(data, "work", "node")), recipe=str(data.get("recipe", "research")),
        key=path(data["key"]) if data.get("key") else None, host=str(data.get("host", "127.0.0.1")),
        allow=tuple(allow), quiet_seconds=quiet, workers=workers,
        health_port=_port(data.get("health_port", 0), "health_port", True), retry=policy,
        destinations=destinations, tls=parse_tls(data.get("tls"), "node", path, server=True))


def load_config(path: str | os.PathLike[str]) -> NodeConfig:
    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not YAML ({exc.__class__.__name__})") from None
    return parse_config(data, p.parent.resolve())
