"""Both managed services across a crash of the hub, their port and their state files.

A real hub runs the idle culler and the user-limit service as managed services. The hub's own
process is SIGKILLed (its proxy stays up): the services must notice that the hub which started
them is gone, say so in their log and exit, so that the hub started again with a changed config
gets fresh services with the new settings instead of orphans holding the ports.
"""

from __future__ import annotations

import contextlib
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from harness import VENV_BIN, child_env, free_port, wait_until

CULLER = "idle-culler"
LIMIT = "user-limit"
MODULES = {
    CULLER: b"jupyterhub_lab_ext.services.culler",
    LIMIT: b"jupyterhub_lab_ext.services.user_limit",
}
GONE = "the hub (pid {pid}) that started this service is gone"


def services_config(state: Path, *, timeout: int, cap: int) -> str:
    """Both services as managed services; the culler keeps its database in ``state``."""
    culler_cmd = [
        str(VENV_BIN / "python"),
        "-m",
        "jupyterhub_lab_ext.services.culler",
        f"--db-url=sqlite:///{state}/culler.sqlite",
        f"--timeout={timeout}",
        "--cull-every=3600",
    ]
    return f"""
from jupyterhub_lab_ext.services.user_limit.hubconfig import enable_user_limit
c.JupyterHub.authenticator_class = "null"
c.JupyterHub.custom_scopes = {{"custom:idle-culler:admin": {{"description": "culler admin"}}}}
c.JupyterHub.services.append({{
    "name": {CULLER!r},
    "url": "http://127.0.0.1:{free_port()}",
    "command": {culler_cmd!r},
}})
c.JupyterHub.load_roles.append({{
    "name": "idle-culler",
    "services": [{CULLER!r}],
    "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers"],
}})
enable_user_limit(c, {{"max_active_servers": {cap}}}, url="http://127.0.0.1:{free_port()}")
"""


def service(hub, name: str, path: str) -> httpx.Response:
    return httpx.get(
        f"{hub.url}/services/{name}/{path}",
        headers={"Authorization": f"token {hub.admin_token}"},
        timeout=10,
    )


def wait_services(hub) -> None:
    for name in (CULLER, LIMIT):
        wait_until(
            lambda n=name: service(hub, n, "health").status_code == 200,
            timeout=60,
            what=f"{name} health",
        )


def ppid_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def service_pids(hub_pid: int) -> dict[str, int]:
    """{service name: pid} of the services whose parent is ``hub_pid``."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            for name, module in MODULES.items():
                if module in cmdline.split(b"\0") and ppid_of(int(entry)) == hub_pid:
                    found[name] = int(entry)
    return found


def alive(pid: int) -> bool:
    try:
        return "Z" not in Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False


def test_services_exit_with_a_killed_hub_and_restart_with_new_config(make_hub, tmp_path):
    state = tmp_path / "services-state"  # missing: the culler creates it
    hub = make_hub(authenticator=None, start=False)
    hub.append_config(services_config(state, timeout=600, cap=3))
    hub.start()
    wait_services(hub)
    old_hub = hub.process.pid
    old = wait_until(
        lambda: p if len(p := service_pids(old_hub)) == 2 else None,
        timeout=10,
        what="both services as children of the hub",
    )
    try:
        # item 12: state files private to the service account, on a real managed service
        assert stat.S_IMODE(state.stat().st_mode) == 0o700
        files = [state / "culler.sqlite", hub.workdir / "user-limit.sqlite"]
        files += [f for f in hub.workdir.glob("user-limit.sqlite-*")]  # WAL, shared memory
        assert len(files) >= 3, files
        assert {f.name: oct(stat.S_IMODE(f.stat().st_mode)) for f in files} == {
            f.name: "0o600" for f in files
        }

        killed = time.monotonic()
        os.kill(old_hub, signal.SIGKILL)  # the hub only: its proxy keeps running
        hub.process.proc.wait(10)
        for name, pid in old.items():
            wait_until(lambda p=pid: not alive(p), timeout=20, what=f"{name} (pid {pid}) to exit")
        print(f"both services gone {time.monotonic() - killed:.1f}s after the hub's SIGKILL")
        log = hub.log_text()
        assert log.count(GONE.format(pid=old_hub)) == 2, hub.log_tail()

        hub.process.stop()  # reap the dead hub, close its log
        text = hub.config_path.read_text()
        text = text.replace("--timeout=600", "--timeout=900").replace(
            '"max_active_servers": 3', '"max_active_servers": 5'
        )
        hub.config_path.write_text(text)
        restart_at = len(hub.log_text())
        hub.start()
        wait_services(hub)
        culler = service(hub, CULLER, "api/status")
        assert culler.status_code == 200, culler.text
        assert culler.json()["config"]["timeout"] == 900
        limits = service(hub, LIMIT, "api/status")
        assert limits.status_code == 200, limits.text
        assert limits.json()["limits"]["max_active_servers"] == 5
        new = service_pids(hub.process.pid)
        assert set(new) == {CULLER, LIMIT} and not set(new.values()) & set(old.values())
        assert "Address already in use" not in hub.log_text()[restart_at:]
    finally:
        for pid in old.values():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize("module", ["culler", "user_limit"])
def test_port_in_use_names_the_port_and_its_holder(module, tmp_path):
    port = free_port()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import socket, sys, time\n"
            "s = socket.socket(); s.bind(('127.0.0.1', int(sys.argv[1]))); s.listen()\n"
            "print('listening', flush=True); time.sleep(120)",
            str(port),
        ],
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        assert holder.stdout.readline() == b"listening\n"
        env = child_env(
            JUPYTERHUB_API_URL="http://127.0.0.1:9/hub/api",  # never reached
            JUPYTERHUB_API_TOKEN="t" * 32,
            JUPYTERHUB_SERVICE_URL=f"http://127.0.0.1:{port}",
            JUPYTERHUB_USER_LIMIT_HOOK_TOKEN="h" * 32,
        )
        out = subprocess.run(
            [
                str(VENV_BIN / "python"),
                "-m",
                f"jupyterhub_lab_ext.services.{module}",
                f"--db-url=sqlite:///{tmp_path}/db.sqlite",
            ],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
        log = out.stdout + out.stderr
        assert out.returncode != 0, log
        assert f"Cannot listen on 127.0.0.1:{port}" in log, log
        assert f"pid {holder.pid}" in log, log
        assert "Traceback" not in log, log
    finally:
        os.killpg(holder.pid, signal.SIGKILL)
        holder.wait(10)
