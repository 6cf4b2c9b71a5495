"""A service's life next to the hub that started it: stop on signals, exit with the hub, say who
holds the port.

- :func:`stop_on_signals` turns SIGTERM and SIGINT into a clean stop while the service runs.
- :func:`hub_pid_to_watch` decides whether to watch the parent process (pure);
  :func:`watch_parent` polls ``os.getppid()`` and calls back once the parent is gone;
  :func:`watch_hub` starts that for a service, as ``exit_with_hub`` says. A managed
  service whose hub crashed (SIGKILL, OOM killer) is re-parented; it shuts down so that the hub,
  started again, can start a fresh service with its new config on the same port.
- :func:`port_holders` finds the processes holding a TCP port (``/proc/net/tcp{,6}`` socket
  inodes matched against ``/proc/<pid>/fd``); :func:`bind_failure` words the startup error.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import signal
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

#: seconds between two looks at the parent pid
PARENT_POLL_INTERVAL = 1.0
#: set by the hub for every service it starts (its name in the hub)
SERVICE_NAME_ENV = "JUPYTERHUB_SERVICE_NAME"
#: set by the hub for a service entry with a ``url``: where to listen
SERVICE_URL_ENV = "JUPYTERHUB_SERVICE_URL"
#: the signals that stop a service cleanly
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StartupError(Exception):
    """The service cannot start; the message says why (logged without traceback, exit 1)."""


# ----------------------------------------------------------------------------- signals


@contextlib.contextmanager
def stop_on_signals(stop: Callable[[], None]) -> Iterator[None]:
    """Call ``stop()`` on SIGTERM or SIGINT while in the block (on the running loop).

    Where the loop cannot take signal handlers (not the main thread), nothing is installed.
    """
    loop = asyncio.get_running_loop()
    for sig in STOP_SIGNALS:
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop)
    try:
        yield
    finally:
        for sig in STOP_SIGNALS:
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)


# ----------------------------------------------------------------------------- exit with the hub


def hub_pid_to_watch(
    mode: str, *, env: Mapping[str, str], pid: int, ppid: int, sid: int
) -> int | None:
    """The parent pid to watch, or None.

    ``mode`` is ``ServiceApp.exit_with_hub``: ``off`` never watches; ``on`` watches any parent
    but init; ``auto`` watches when the process looks started by a hub as a managed service:
    ``$JUPYTERHUB_SERVICE_NAME`` set (the hub sets it for every managed service) and a session
    of its own (the hub starts services with ``start_new_session``). A parent that is pid 1
    (systemd, a container's init) or 0 (pid 1 itself) is never watched: it is not a hub.
    """
    if mode == "off" or ppid <= 1:
        return None
    if mode == "on":
        return ppid
    started_by_hub = bool(env.get(SERVICE_NAME_ENV)) and sid == pid
    return ppid if started_by_hub else None


async def watch_parent(
    parent: int,
    on_gone: Callable[[], None],
    *,
    interval: float = PARENT_POLL_INTERVAL,
    getppid: Callable[[], int] = os.getppid,
) -> None:
    """Call ``on_gone()`` once this process's parent is no longer ``parent``.

    A dead parent's children are re-parented (to pid 1 or a subreaper), so ``getppid()``
    changes within ``interval`` seconds of the parent's death. Runs until then or cancelled.
    """
    while True:
        if getppid() != parent:
            on_gone()
            return
        await asyncio.sleep(interval)


def watch_hub(
    mode: str,
    *,
    service_name: str,
    stop: Callable[[], None],
    log: logging.Logger | logging.LoggerAdapter,
) -> asyncio.Task | None:
    """Watch the hub that started this process as ``mode`` (``exit_with_hub``) says, and call
    ``stop()`` once it is gone; None when not watched."""
    ppid = os.getppid()
    parent = hub_pid_to_watch(mode, env=os.environ, pid=os.getpid(), ppid=ppid, sid=os.getsid(0))
    if parent is None:
        if mode == "on":
            log.warning("exit_with_hub is on, but the parent is pid %d: not watched", ppid)
        return None
    log.info("Watching the hub (pid %d): this service exits when it is gone", parent)

    def gone():
        log.warning(
            "%s: the hub (pid %d) that started this service is gone: shutting down, "
            "so that a restarted hub can start a fresh one",
            service_name,
            parent,
        )
        stop()

    return asyncio.ensure_future(watch_parent(parent, gone))


# ----------------------------------------------------------------------------- port holders


def socket_inodes(table: str, port: int) -> set[int]:
    """Inodes of the sockets bound to local ``port`` in a ``/proc/net/tcp`` or ``tcp6`` table.

    Sockets without an inode (``TIME_WAIT``) hold nobody's port and are left out.
    """
    inodes = set()
    for line in table.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 10:
            continue
        try:
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            inode = int(fields[9])
        except (IndexError, ValueError):
            continue
        if local_port == port and inode:
            inodes.add(inode)
    return inodes


def describe_command(argv: list[str], words: int = 3) -> str:
    """The first ``words`` of a command line, option values hidden (they may be secrets)."""
    shown = []
    for word in argv[:words]:
        name, eq, _value = word.partition("=")
        shown.append(name + "=..." if eq and name.startswith("-") else word)
    if len(argv) > words:
        shown.append("...")
    return " ".join(shown)


def socket_owners(inodes: set[int], proc: str = "/proc") -> list[tuple[int, str]]:
    """``[(pid, command)]`` of the processes (visible to this account) with one of ``inodes``."""
    targets = {f"socket:[{inode}]" for inode in inodes}
    owners = []
    for entry in sorted(os.listdir(proc), key=lambda e: (len(e), e)):
        if not entry.isdigit():
            continue
        fd_dir = os.path.join(proc, entry, "fd")
        try:
            fds = os.listdir(fd_dir)
        except OSError:  # gone, or not ours to look at
            continue
        for fd in fds:
            try:
                link = os.readlink(os.path.join(fd_dir, fd))
            except OSError:
                continue
            if link in targets:
                try:
                    raw = Path(proc, entry, "cmdline").read_bytes()
                except OSError:
                    raw = b""
                argv = [a.decode(errors="replace") for a in raw.split(b"\0") if a]
                owners.append((int(entry), describe_command(argv) or "?"))
                break
    return owners


def port_holders(port: int, proc: str = "/proc") -> list[tuple[int, str]]:
    """``[(pid, command)]`` of the processes holding TCP ``port`` (empty if none can be seen)."""
    inodes: set[int] = set()
    for table in ("tcp", "tcp6"):
        try:
            inodes |= socket_inodes(Path(proc, "net", table).read_text(), port)
        except OSError:
            continue
    return socket_owners(inodes, proc) if inodes else []


def bind_failure(host: str, port: int, error: OSError, holders: list[tuple[int, str]]) -> str:
    """The startup error for a service that could not listen on ``host:port``."""
    message = f"Cannot listen on {host}:{port}: {error.strerror or error}"
    if error.errno != errno.EADDRINUSE:
        return message
    if holders:
        held = ", ".join(f"pid {pid} ({command})" for pid, command in holders)
        message += f"; the port is held by {held}"
    else:
        message += "; no process holding it is visible to this account"
    return (
        message + ". A service left over from a hub that crashed exits by itself within a few "
        "seconds (exit_with_hub); otherwise stop that process or give this service another URL"
    )
