"""A secret kept in a file of its own: read it, or make a new random one (mode 0600).

One helper for every secret the package keeps on disk: the services' cookie secret
(``ServiceApp.cookie_secret_file``) and the token the user-limit hook shares with its service
(``enable_user_limit(hook_token_file=...)``).
"""

from __future__ import annotations

import logging
import os
import secrets
import stat

log = logging.getLogger(__name__)

#: characters a kept secret has at least; a shorter one is replaced
MIN_SECRET_LENGTH = 32


def read_or_create_secret(path: str, *, log: logging.Logger | logging.LoggerAdapter = log) -> str:
    """The secret in ``path``; a new random one (64 hex digits, file mode 0600) when the file is
    missing, empty, shorter than :data:`MIN_SECRET_LENGTH` or not text.

    A file that group or others may read is used, with a warning to ``chmod 600`` it: the
    secret may be known to others already, which only its owner can judge. Raises ``OSError``
    when the file cannot be read or written; the secret itself is never logged.
    """
    secret = _read(path, log)
    if secret is not None:
        return secret
    secret = secrets.token_hex(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        os.fchmod(f.fileno(), 0o600)  # an existing file keeps its mode through O_TRUNC
        f.write(secret)
    log.info("Wrote a new secret to %s", path)
    return secret


def _read(path: str, log: logging.Logger | logging.LoggerAdapter) -> str | None:
    """The usable secret in ``path``, or None when there is none."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    with os.fdopen(fd, "rb") as f:
        mode = os.fstat(f.fileno()).st_mode
        raw = f.read()
    if mode & 0o077:
        log.warning(
            "%s is open to group or others (mode %04o): chmod 600 it", path, stat.S_IMODE(mode)
        )
    try:
        secret = raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        secret = ""
    if len(secret) >= MIN_SECRET_LENGTH:
        return secret
    log.warning("%s holds no usable secret (short or not text): replacing it", path)
    return None
