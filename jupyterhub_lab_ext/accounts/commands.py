"""The commands that change the account database, as argv lists, and how to run them.

Pure argv builders for the three tool sets (``useradd``/``groupadd``/``usermod`` from shadow,
Debian's ``adduser``/``addgroup`` and BusyBox's ``adduser``/``addgroup``), the default runner
and tool detection. :mod:`.system_users` decides *what* to run; this module knows *how*.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Sequence

from jupyterhub_lab_ext.accounts.spec import AccountSpec

# fixed PATH (the hub may run without sbin in PATH) and C locale (stable messages)
COMMAND_TIMEOUT = 120.0
ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"}


async def run_command(
    argv: Sequence[str], *, timeout: float = COMMAND_TIMEOUT
) -> tuple[int, str, str]:
    """Run ``argv`` (no shell, fixed PATH, C locale); return ``(rc, stdout, stderr)``.

    A command still running after ``timeout`` seconds is killed and reported as rc -9.
    """
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=ENV,
        )
    except FileNotFoundError as e:
        return 127, "", f"{argv[0]}: not found ({e})"
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except asyncio.TimeoutError:
        proc.kill()
        await proc.wait()
        return -9, "", f"{argv[0]}: killed after {timeout:g} s"
    return proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")


def build_group_argv(flavour: str, name: str, gid: int | None) -> list[str]:
    """argv that creates group ``name`` (with ``gid`` if given)."""
    if flavour == "useradd":
        return ["groupadd", *(["-g", str(gid)] if gid is not None else []), name]
    if flavour == "busybox":
        return ["addgroup", *(["-g", str(gid)] if gid is not None else []), name]
    return ["addgroup", "--quiet", *(["--gid", str(gid)] if gid is not None else []), name]


def build_user_argv(flavour: str, spec: AccountSpec, group: str) -> list[str]:
    """argv that creates the account of ``spec`` with primary ``group``, without a home."""
    uid = [str(spec.uid)] if spec.uid is not None else []
    if flavour == "useradd":
        argv = ["useradd", "-M", "-d", spec.home, "-s", spec.shell, "-g", group]
        argv += ["-u", *uid] if uid else []
        argv += ["-G", ",".join(spec.supplementary_groups)] if spec.supplementary_groups else []
        argv += ["-c", spec.comment] if spec.comment else []
        return [*argv, spec.name]
    if flavour == "busybox":
        argv = ["adduser", "-D", "-H", "-h", spec.home, "-s", spec.shell, "-G", group]
        argv += ["-u", *uid] if uid else []
        argv += ["-g", spec.comment] if spec.comment else []
        return [*argv, spec.name]
    argv = ["adduser", "--quiet", "--disabled-password", "--no-create-home"]
    argv += ["--home", spec.home, "--shell", spec.shell, "--ingroup", group]
    argv += ["--uid", *uid] if uid else []
    return [*argv, "--gecos", spec.comment, spec.name]


def build_add_to_groups_argvs(flavour: str, name: str, groups: Sequence[str]) -> list[list[str]]:
    """argvs that add account ``name`` to the supplementary ``groups``."""
    if not groups:
        return []
    if flavour == "useradd":
        return [["usermod", "-a", "-G", ",".join(groups), name]]
    if flavour == "busybox":
        return [["addgroup", name, g] for g in groups]
    return [["adduser", "--quiet", name, g] for g in groups]


def build_lock_argvs(flavour: str, name: str, *, unlock: bool = False) -> list[list[str]]:
    """argvs that lock (or unlock) ``name``: password locked and, where possible, the
    account expired, so that SSH keys are refused too (``pam_unix`` checks expiry)."""
    if flavour == "useradd":
        if unlock:
            return [["usermod", "-U", "-e", "", name]]
        return [["usermod", "-L", "-e", "1", name]]
    return [["passwd", "-u" if unlock else "-l", name]]


def detect_flavour(path: str) -> str:
    """``useradd`` if available, else ``busybox`` or ``adduser`` (Debian style)."""
    if shutil.which("useradd", path=path):
        return "useradd"
    adduser = shutil.which("adduser", path=path)
    if adduser is None:
        raise RuntimeError(f"neither useradd nor adduser found in {path}")
    if os.path.basename(os.path.realpath(adduser)).startswith("busybox"):
        return "busybox"
    return "adduser"
