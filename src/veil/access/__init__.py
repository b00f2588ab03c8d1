"""Access control where veil serves (the review UI, the DICOM node): roles, the actions they allow, the users
file with hashed secrets, authentication and :func:`authorize` (which logs every denial, never a value).

``from veil.access import Action, authorize, authenticate_bearer, load_users`` is the usual entry; the role x
action table is in :mod:`veil.access.roles`, the file format and the token scheme in :mod:`veil.access.users`.
"""

from __future__ import annotations

from veil.access.roles import (
    PERMISSIONS,
    AccessDenied,
    Action,
    Role,
    Subject,
    actions_of,
    allowed,
    authorize,
    parse_roles,
)
from veil.access.users import (
    MIN_PASSWORD_LENGTH,
    USERS_FILE_VERSION,
    AuthenticationFailed,
    User,
    Users,
    UsersFileError,
    add_user,
    authenticate,
    authenticate_bearer,
    authenticate_token,
    bearer_token,
    hash_secret,
    load_users,
    new_token,
    parse_users,
    remove_user,
    save_users,
    verify_secret,
)

__all__ = [
    "PERMISSIONS",
    "MIN_PASSWORD_LENGTH",
    "USERS_FILE_VERSION",
    "AccessDenied",
    "Action",
    "AuthenticationFailed",
    "Role",
    "Subject",
    "User",
    "Users",
    "UsersFileError",
    "actions_of",
    "add_user",
    "allowed",
    "authenticate",
    "authenticate_bearer",
    "authenticate_token",
    "authorize",
    "bearer_token",
    "hash_secret",
    "load_users",
    "new_token",
    "parse_roles",
    "parse_users",
    "remove_user",
    "save_users",
    "verify_secret",
]
