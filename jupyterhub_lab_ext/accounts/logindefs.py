"""``/etc/login.defs``: the one reader of its numeric settings (``UID_MIN``, ``GID_MIN`` ...).

Used by :mod:`.system_users` (the ids it may hand out), by the authenticator's ``uid_min``
default and by :func:`jupyterhub_lab_ext.auth.naming.load_system_names`. Reads block: call them
in a thread on the hub's event loop.
"""

from __future__ import annotations

LOGIN_DEFS = "/etc/login.defs"
#: ``UID_MIN`` / ``GID_MIN`` when the file does not say (shadow's own default)
DEFAULT_ID_MIN = 1000


def parse_login_defs(text: str) -> dict[str, int]:
    """Numeric settings of login.defs text: ``NAME VALUE`` lines, ``#`` comments.

    Values are decimal, or anything :func:`int` reads with base 0 (``0x3e8``); other values
    (``ENCRYPT_METHOD SHA512``) are left out. A setting given twice keeps the last value, as
    shadow's tools do.
    """
    values: dict[str, int] = {}
    for line in text.splitlines():
        parts = line.split("#", 1)[0].split()
        if len(parts) < 2:
            continue
        for base in (10, 0):
            try:
                values[parts[0]] = int(parts[1], base)
                break
            except ValueError:
                continue
    return values


def read_login_defs(path: str = LOGIN_DEFS) -> dict[str, int]:
    """:func:`parse_login_defs` of the file at ``path``; a missing file gives ``{}``."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return parse_login_defs(f.read())
    except FileNotFoundError:
        return {}


def uid_min(path: str = LOGIN_DEFS) -> int:
    """``UID_MIN`` of ``path``; :data:`DEFAULT_ID_MIN` when absent or the file is unreadable."""
    try:
        return read_login_defs(path).get("UID_MIN", DEFAULT_ID_MIN)
    except OSError:
        return DEFAULT_ID_MIN
