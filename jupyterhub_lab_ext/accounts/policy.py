"""Which accounts, groups and settings :mod:`.system_users` may use: pure rules, no I/O.

- names: ``[a-z_][a-z0-9_.-]*``, at most 32 characters (what useradd, Debian's adduser and
  BusyBox all accept; :mod:`.naming` produces a subset);
- ids: uid/gid 0, ids below ``UID_MIN``/``GID_MIN`` and the nobody/overflow ids are never used,
  whatever ``allow_existing`` says;
- an existing account is used only if the registry says this package created it (with the
  same uid), or with ``allow_existing``;
- an existing personal group likewise; a shared group below ``GID_MIN`` only if the admin
  listed it in ``allowed_system_groups``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Collection

from jupyterhub_lab_ext.accounts.spec import AccountSpec

NAME_RE = re.compile(r"\A[a-z_][a-z0-9_.-]{0,31}\Z")  # \Z: "name\n" is not a name
_BAD_FIELD = re.compile(r"[:\x00-\x1f\x7f]")
# nobody/nogroup and the "no id" values
OVERFLOW_IDS = frozenset({65534, 65535, 2**32 - 2, 2**32 - 1})


class SystemUserError(RuntimeError):
    """A system account operation failed; for a command, the message has argv, rc and stderr."""

    def __init__(self, message: str, *, argv=None, rc=None, stderr: str = ""):
        self.argv = list(argv) if argv is not None else None
        self.rc = rc
        self.stderr = stderr
        if argv is not None:
            message = f"{message}: command {self.argv} exited with rc={rc}: {stderr.strip()}"
        super().__init__(message)


class ExistingAccountError(SystemUserError):
    """The name belongs to an account this package may not use (not ours, or a system one)."""


def validate_spec(spec: AccountSpec, uid_min: int, gid_min: int) -> None:
    """Raise unless ``spec`` is acceptable (names, home, shell, ids; see module docstring)."""
    for name in (spec.name, spec.group, *spec.supplementary_groups):
        if name is not None and not NAME_RE.match(name):
            raise SystemUserError(f"invalid account or group name {name!r}")
    home = spec.home
    if not os.path.isabs(home) or os.path.normpath(home) != home or home == "/":
        raise SystemUserError(f"home of {spec.name} must be a normalized absolute path: {home!r}")
    for label, value in (("home", home), ("shell", spec.shell), ("comment", spec.comment)):
        if _BAD_FIELD.search(value):
            raise SystemUserError(f"{label} of {spec.name} contains ':' or a control character")
    if not os.path.isabs(spec.shell):
        raise SystemUserError(f"shell of {spec.name} must be an absolute path: {spec.shell!r}")
    if spec.home_mode & ~0o7777:
        raise SystemUserError(f"bad home_mode {spec.home_mode:o}")
    for label, value, low in (("uid", spec.uid, uid_min), ("gid", spec.gid, gid_min)):
        if value is not None and (value == 0 or value < low or value in OVERFLOW_IDS):
            raise ExistingAccountError(f"refusing {label} {value} for {spec.name} (< {low})")


def check_existing_account(
    name: str, uid: int, record: dict | None, uid_min: int, allow_existing: bool
) -> bool:
    """Raise unless existing account ``name`` may be used; True if this package created it.

    ``record`` is its registry record (None: not created by us; uid None: creation was
    interrupted after the intent was recorded).
    """
    if uid == 0 or uid < uid_min or uid in OVERFLOW_IDS:
        raise ExistingAccountError(
            f"refusing system account {name!r} (uid {uid}: below UID_MIN {uid_min}, root or nobody)"
        )
    if record is not None and record.get("uid") in (None, uid):
        return True
    if allow_existing:
        return False
    why = "was not created by jupyterhub-lab-ext"
    if record is not None:
        why = f"has uid {uid}, but jupyterhub-lab-ext created it with uid {record['uid']}"
    raise ExistingAccountError(f"account {name!r} already exists and {why}")


def check_existing_group(
    name: str,
    gid: int,
    record: dict | None,
    *,
    personal: bool,
    gid_min: int,
    allow_existing: bool,
    allowed: Collection[str] = (),
) -> None:
    """Raise unless existing group ``name`` may be used (see module docstring)."""
    ours = record is not None and record.get("gid") in (None, gid)
    if gid == 0 or gid in OVERFLOW_IDS:
        raise ExistingAccountError(f"refusing group {name!r} with gid {gid}")
    if personal and gid < gid_min:
        raise ExistingAccountError(f"refusing system group {name!r} (gid {gid})")
    if personal and not ours and not allow_existing:
        raise ExistingAccountError(
            f"group {name!r} already exists and was not created by jupyterhub-lab-ext"
        )
    if not personal and gid < gid_min and not ours and name not in allowed:
        raise ExistingAccountError(
            f"refusing system group {name!r} (gid {gid} < {gid_min}); "
            "list it in allowed_system_groups to allow it"
        )
