"""The server's memory limit and the engine's out-of-memory kills, from its cgroup.

When a kernel uses more memory than the container's limit, the kernel's OOM killer stops it and
JupyterLab alone only says the kernel died. The container's memory cgroup knows the limit and
counts those kills: cgroup v1 ``memory.limit_in_bytes`` and the ``oom_kill`` line of
``memory.oom_control``; cgroup v2 ``memory.max`` and the ``oom_kill`` line of ``memory.events``.
:func:`read_memory` reads them (None for whatever is missing: no cgroup, no limit, an older
kernel); :func:`memory_status` is the pure part that words it for the status item.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from jupyterhub_lab_ext.util.sizes import size_text

CGROUP_ROOT = "/sys/fs/cgroup"
PROC_CGROUP = "/proc/self/cgroup"
#: the popup's line after a kill
ADVICE = (
    "A kernel that needs more memory than the limit is stopped by the system. Restart it and "
    "work with less data at once (read files in chunks, delete large objects you no longer "
    "need), or ask the hub's administrators for a higher limit."
)
#: a v1 limit at least this large is the kernel's "unlimited" (PAGE_COUNTER_MAX in bytes)
NO_LIMIT = 2**60


@dataclass(frozen=True)
class Memory:
    """``limit`` in bytes and ``oom_kills`` so far; None where the cgroup does not say."""

    limit: int | None = None
    oom_kills: int | None = None


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            return f.read(4096)
    except OSError:
        return None


def _int(text: str | None) -> int | None:
    try:
        return int(text.strip()) if text is not None else None
    except ValueError:
        return None


def _counter(text: str | None, name: str) -> int | None:
    """The value of line ``name N`` in a flat-keyed cgroup file."""
    for line in (text or "").splitlines():
        key, _, value = line.partition(" ")
        if key == name:
            return _int(value)
    return None


def _own_dir(base: str, proc_cgroup: str, match) -> str:
    """The process's own cgroup directory under ``base`` (the mount itself inside a container,
    where the cgroup namespace makes it the root)."""
    for line in (_read(proc_cgroup) or "").splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3 and match(parts[1]):
            own = os.path.join(base, parts[2].lstrip("/"))
            if parts[2].strip("/") and os.path.isdir(own):
                return own
    return base


def read_memory(root: str = CGROUP_ROOT, proc_cgroup: str = PROC_CGROUP) -> Memory:
    """This process's memory limit and OOM-kill count (cgroup v2, else v1)."""
    if os.path.exists(os.path.join(root, "cgroup.controllers")):  # v2: one unified hierarchy
        own = _own_dir(root, proc_cgroup, lambda controllers: controllers == "")
        limit = _read(os.path.join(own, "memory.max"))
        events = _read(os.path.join(own, "memory.events"))
        return Memory(
            limit=None if limit is None or limit.strip() == "max" else _int(limit),
            oom_kills=_counter(events, "oom_kill"),
        )
    base = os.path.join(root, "memory")
    if not os.path.isdir(base):
        return Memory()
    own = _own_dir(base, proc_cgroup, lambda controllers: "memory" in controllers.split(","))
    limit = _int(_read(os.path.join(own, "memory.limit_in_bytes")))
    return Memory(
        limit=limit if limit is not None and limit < NO_LIMIT else None,
        oom_kills=_counter(_read(os.path.join(own, "memory.oom_control")), "oom_kill"),
    )


def origin_text(origin: str | None) -> str:
    """``group:students`` -> ``your group students``; where the spawner's limit came from."""
    if not origin:
        return ""
    kind, _, name = origin.partition(":")
    if origin == "*":
        return "the hub's default for everyone"
    if kind == "group" and name:
        return f"your group {name}"
    if kind == "env" and name:
        return f"the environment {name}"
    return ""


def memory_status(memory: Memory, origin: str | None, baseline: int) -> dict:
    """The status item's memory part. ``oom_kills`` counts the kills since the server started
    (``baseline``: the count then); ``message`` is the notification's text after one."""
    if memory.limit is None:
        return {"state": "unknown", "oom_kills": None}
    where = origin_text(origin)
    limit = size_text(memory.limit) + (f", {where}" if where else "")
    kills = None if memory.oom_kills is None else max(0, memory.oom_kills - baseline)
    out = {
        "state": "limited",
        "limit_bytes": memory.limit,
        "limit_text": limit,
        "origin": origin or None,
        "oom_kills": kills,
        "detail": f"Memory limit: {limit}" + (f"; kernels stopped by it: {kills}" if kills else ""),
        # JupyterLab shows the first 140 characters of a notification: the limit comes first
        "message": (
            f"A kernel was stopped by your server's memory limit ({limit}). "
            "Restart it with less data, or ask the admins for more."
        ),
    }
    if kills:
        out["advice"] = ADVICE
    return out
