"""The users file: names, roles and scrypt hashes of their secrets; authentication by name and secret or token.

The file (YAML, mode 0600: refused when the group or others have any access, like a key file)::

    version: 1
    users:
      - name: alice
        roles: [reviewer, auditor]
        secret: scrypt$32768$8$1$<salt, base64>$<hash, base64>

A secret is a random token (``secrets.token_urlsafe(32)``, shown once when the user is added) or a password
given on stdin; the file holds only its scrypt hash (16-byte salt, 32-byte hash), compared in constant time
(``hmac.compare_digest``). No secret, token or hash is ever logged, printed or put in an error message.

Bearer tokens (for the review UI's ``/api`` and the node's endpoints) are ``NAME:SECRET``: the name picks the
one hash to check, so a request costs one scrypt, not one per user. Names hold no ``:``; a password may (the token
is split at the first one). A request naming no known user is checked against a dummy hash with the default
parameters, so the time taken does not say which names exist, and the error is the same ("unknown user or wrong
secret"). A verified token is remembered per :class:`Users` object (by an HMAC of it under a key made for that
object, never the token), so a client sending the same token with every request pays scrypt once; reloading the
file (a user removed, a secret replaced) starts afresh.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import logging
import os
import re
import secrets
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from veil.access.roles import AccessDenied, Action, Role, actions_of, parse_roles
from veil.errors import VeilError

__all__ = [
    "AuthenticationFailed",
    "MIN_PASSWORD_LENGTH",
    "USERS_FILE_VERSION",
    "User",
    "Users",
    "UsersFileError",
    "add_user",
    "authenticate",
    "authenticate_bearer",
    "authenticate_token",
    "bearer_token",
    "hash_secret",
    "load_users",
    "new_token",
    "parse_users",
    "remove_user",
    "save_users",
    "verify_secret",
]

logger = logging.getLogger("veil.access")

USERS_FILE_VERSION = 1
MIN_PASSWORD_LENGTH = 12
_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**15, 8, 1  # 32 MiB, ~0.1 s per check: a password guess costs as much
_SALT, _HASH = 16, 32
_MAX_MEMORY = 256 * 2**20  # 128 * n * r bytes: parameters needing more are refused, not run
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
_NAME_RULE = "letters, digits, '.', '_', '@' and '-' (64 at most, starting with a letter or digit)"
_CACHE_LIMIT = 4096
_HEADER = ("# veil users file: names, roles and scrypt hashes of their secrets (never the secrets).\n"
           "# Keep it mode 0600; change it with `veil users add|remove`.\n")


class UsersFileError(VeilError):
    """A users file that cannot be read, is unsafe (readable by others) or malformed; or a bad user change."""


class AuthenticationFailed(AccessDenied):
    """A name and secret (or token) that do not match a user (HTTP 401); never says which part was wrong."""

    def __init__(self) -> None:
        super().__init__("anonymous", "authenticate", "authentication failed: unknown user or wrong secret")


# -- secrets ---------------------------------------------------------------------------------------------------


def new_token() -> str:
    """A fresh random secret (32 bytes, URL-safe base64): shown once, stored only as its hash."""
    return secrets.token_urlsafe(32)


def bearer_token(name: str, secret: str) -> str:
    """The token a client sends (``Authorization: Bearer NAME:SECRET``)."""
    return f"{name}:{secret}"


def _scrypt(secret: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(secret.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=2 * _MAX_MEMORY, dklen=_HASH)


def _check_parameters(n: int, r: int, p: int) -> None:
    if n < 2**10 or n & (n - 1) or not 1 <= r <= 32 or not 1 <= p <= 16 or 128 * n * r > _MAX_MEMORY:
        raise ValueError("scrypt parameters out of range (n a power of two from 1024, r 1..32, p 1..16, "
                         "at most 256 MiB)")


def hash_secret(secret: str, *, n: int = _SCRYPT_N, r: int = _SCRYPT_R, p: int = _SCRYPT_P) -> str:
    """``scrypt$N$r$p$salt$hash`` of ``secret`` with a fresh salt (what the users file stores)."""
    _check_parameters(n, r, p)
    salt = os.urandom(_SALT)
    digest = _scrypt(secret, salt, n, r, p)
    return f"scrypt${n}${r}${p}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def _parse_hash(stored: str) -> tuple[int, int, int, bytes, bytes]:
    parts = stored.split("$")
    if len(parts) != 6 or parts[0] != "scrypt":
        raise ValueError("not a veil scrypt hash (scrypt$N$r$p$salt$hash)")
    try:
        n, r, p = (int(x) for x in parts[1:4])
        salt = base64.b64decode(parts[4], validate=True)
        digest = base64.b64decode(parts[5], validate=True)
    except (ValueError, binascii.Error):
        raise ValueError("not a veil scrypt hash (scrypt$N$r$p$salt$hash)") from None
    _check_parameters(n, r, p)
    if len(salt) < _SALT or len(digest) != _HASH:
        raise ValueError(f"scrypt hash needs a salt of {_SALT} bytes at least and a hash of {_HASH}")
    return n, r, p, salt, digest


def verify_secret(secret: str, stored: str) -> bool:
    """Whether ``secret`` matches the stored hash (constant-time comparison); ``False`` for a malformed hash."""
    try:
        n, r, p, salt, digest = _parse_hash(stored)
    except ValueError:
        return False
    return hmac.compare_digest(_scrypt(secret, salt, n, r, p), digest)


@functools.cache
def _dummy_hash() -> str:
    return hash_secret(new_token())


# -- users -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class User:
    """One user: a name, its roles and the hash of its secret (never the secret; not in ``repr``)."""

    name: str
    roles: frozenset[Role]
    secret_hash: str = field(default="", repr=False, compare=False)

    def __post_init__(self) -> None:
        if not _NAME.fullmatch(self.name):
            raise UsersFileError(f"a user name is {_NAME_RULE}")
        if not self.roles:
            raise UsersFileError(f"user {self.name}: give at least one role")
        try:
            object.__setattr__(self, "roles", parse_roles(self.roles))
        except ValueError as exc:
            raise UsersFileError(f"user {self.name}: {exc}") from None

    @property
    def actions(self) -> frozenset[Action]:
        """Every action this user's roles allow."""
        return actions_of(self.roles)

    def can(self, action: Action | str) -> bool:
        """Whether this user may do ``action`` (no logging: for showing or hiding a control)."""
        return Action(action) in self.actions


@dataclass(frozen=True)
class Users:
    """The users of one file, in its order; immutable (a change makes a new one, :func:`save_users` writes it)."""

    users: tuple[User, ...] = ()
    version: int = USERS_FILE_VERSION
    _cache_key: bytes = field(default_factory=lambda: os.urandom(32), repr=False, compare=False)
    _verified: dict[bytes, str] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        seen: set[str] = set()
        for user in self.users:
            if user.name in seen:
                raise UsersFileError(f"user {user.name} appears twice")
            seen.add(user.name)

    def __iter__(self) -> Iterator[User]:
        return iter(self.users)

    def __len__(self) -> int:
        return len(self.users)

    def __contains__(self, name: object) -> bool:
        return any(user.name == name for user in self.users)

    def get(self, name: str) -> User | None:
        """The user called ``name``, or ``None``."""
        return next((user for user in self.users if user.name == name), None)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(user.name for user in self.users)


def add_user(users: Users, name: str, roles: Iterable[Role | str], secret: str) -> Users:
    """``users`` with a new user holding ``roles`` and the hash of ``secret`` (a :func:`new_token`, or a
    password of :data:`MIN_PASSWORD_LENGTH` characters at least); refuses a name already there."""
    if name in users:
        raise UsersFileError(f"user {name} already exists (remove it first to give it a new secret or roles)")
    if len(secret) < MIN_PASSWORD_LENGTH:
        raise UsersFileError(f"a secret has {MIN_PASSWORD_LENGTH} characters at least")
    try:
        role_set = parse_roles(str(role) for role in roles)
    except ValueError as exc:
        raise UsersFileError(str(exc)) from None
    user = User(name, role_set, hash_secret(secret))
    return Users((*users.users, user), users.version)


def remove_user(users: Users, name: str) -> Users:
    """``users`` without ``name``; refuses a name that is not there."""
    if name not in users:
        raise UsersFileError(f"no user {name}")
    return Users(tuple(user for user in users if user.name != name), users.version)


# -- the file --------------------------------------------------------------------------------------------------


def _user_from(entry: Any, index: int, where: str) -> User:
    label = f"{where}: user #{index + 1}"
    if not isinstance(entry, dict):
        raise UsersFileError(f"{label}: expected a mapping with name, roles and secret")
    unknown = set(entry) - {"name", "roles", "secret"}
    missing = {"name", "roles", "secret"} - set(entry)
    if unknown or missing:
        detail = "; ".join(filter(None, (
            f"unknown field(s) {', '.join(sorted(map(str, unknown)))}" if unknown else "",
            f"missing {', '.join(sorted(missing))}" if missing else "")))
        raise UsersFileError(f"{label}: {detail}")
    name = entry["name"]
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise UsersFileError(f"{label}: a user name is {_NAME_RULE}")
    label = f"{where}: user {name}"
    roles = entry["roles"]
    if not isinstance(roles, list) or not roles or not all(isinstance(r, str) for r in roles):
        raise UsersFileError(f"{label}: roles is a non-empty list of role names")
    try:
        role_set = parse_roles(roles)
    except ValueError as exc:
        raise UsersFileError(f"{label}: {exc}") from None
    secret = entry["secret"]
    try:
        if not isinstance(secret, str):
            raise ValueError("not a veil scrypt hash (scrypt$N$r$p$salt$hash)")
        _parse_hash(secret)
    except ValueError as exc:  # the reason only: the field may hold a secret pasted by mistake
        raise UsersFileError(f"{label}: secret: {exc}") from None
    return User(name, role_set, secret)


def parse_users(text: str, where: str = "<users>") -> Users:
    """The users of a users file's text; :class:`UsersFileError` naming the file, the user and the problem."""
    import yaml

    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f"{where}:{mark.line + 1}" if mark is not None else where
        raise UsersFileError(f"{at}: not valid YAML ({getattr(exc, 'problem', None) or 'syntax error'})") from None
    if not isinstance(document, dict):
        raise UsersFileError(f"{where}: a users file is a mapping with 'version' and 'users'")
    unknown = set(document) - {"version", "users"}
    if unknown:
        raise UsersFileError(f"{where}: unknown field(s) {', '.join(sorted(map(str, unknown)))}")
    version = document.get("version")
    if isinstance(version, bool) or version != USERS_FILE_VERSION:
        raise UsersFileError(f"{where}: users file version {version!r}; this veil reads {USERS_FILE_VERSION}")
    entries = document.get("users")
    if entries is None:
        entries = []
    if not isinstance(entries, list):
        raise UsersFileError(f"{where}: 'users' is a list")
    users = tuple(_user_from(entry, i, where) for i, entry in enumerate(entries))
    try:
        return Users(users, version)
    except UsersFileError as exc:
        raise UsersFileError(f"{where}: {exc}") from None


def load_users(path: str | os.PathLike[str]) -> Users:
    """The users file at ``path``; refuses one the group or others can access, and a malformed one."""
    p = Path(path)
    try:
        fd = os.open(p, os.O_RDONLY)
    except FileNotFoundError:
        raise UsersFileError(f"{p}: users file not found (create it with `veil users add {p} NAME --role ROLE`)"
                             ) from None
    except OSError as exc:
        raise UsersFileError(f"{p}: cannot read the users file: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as fh:
        mode = os.fstat(fh.fileno()).st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise UsersFileError(f"{p}: users file is open to others (mode {stat.S_IMODE(mode):04o}); chmod 600 it")
        data = fh.read()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise UsersFileError(f"{p}: users file is not UTF-8 text") from None
    return parse_users(text, str(p))


def save_users(path: str | os.PathLike[str], users: Users) -> None:
    """Writes ``users`` to ``path`` atomically, mode 0600 (a temporary file beside it, fsynced, renamed)."""
    import yaml

    p = Path(path)
    document = {
        "version": users.version,
        "users": [{"name": u.name, "roles": [r.value for r in Role if r in u.roles], "secret": u.secret_hash}
                  for u in users],
    }
    text = _HEADER + yaml.safe_dump(document, sort_keys=False, default_flow_style=None)
    temporary = p.with_name(f".{p.name}.tmp-{os.getpid()}")
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        raise UsersFileError(f"{p}: cannot write the users file: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(text.encode("utf-8"))
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(temporary, 0o600)
        os.replace(temporary, p)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    directory = os.open(p.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


# -- authentication --------------------------------------------------------------------------------------------


def _remembered(users: Users, name: str, secret: str) -> bytes:
    return hmac.new(users._cache_key, name.encode("utf-8") + b"\0" + secret.encode("utf-8"), "sha256").digest()


def authenticate(users: Users, name: str, secret: str) -> User:
    """The user called ``name`` when ``secret`` matches its hash; else :class:`AuthenticationFailed` (logged at
    WARNING without the secret), after the same work whether or not the name exists."""
    mark = _remembered(users, name, secret)
    user = users.get(name)
    if user is not None and users._verified.get(mark) == name:
        return user
    matched = verify_secret(secret, user.secret_hash if user is not None else _dummy_hash())
    if user is None or not matched:
        logger.warning("authentication failed: %s", f"user {name}, wrong secret" if user else "unknown user name")
        raise AuthenticationFailed()
    if len(users._verified) >= _CACHE_LIMIT:
        users._verified.clear()
    users._verified[mark] = name
    logger.debug("authenticated user %s", name)
    return user


def authenticate_token(users: Users, token: str) -> User:
    """The user of a bearer token ``NAME:SECRET`` (split at the first ``:``; names hold none), as
    :func:`authenticate`; a token without ``:`` fails the same way, after the same work."""
    name, colon, secret = token.partition(":")
    if not colon or not name:
        verify_secret(token, _dummy_hash())
        logger.warning("authentication failed: a token without a user name")
        raise AuthenticationFailed()
    return authenticate(users, name, secret)


def authenticate_bearer(users: Users, authorization: str | None) -> User:
    """The user of an HTTP ``Authorization: Bearer NAME:SECRET`` header value; a missing header or another
    scheme fails as a wrong token does."""
    scheme, _, token = (authorization or "").strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        logger.warning("authentication failed: no bearer token")
        raise AuthenticationFailed()
    return authenticate_token(users, token.strip())
