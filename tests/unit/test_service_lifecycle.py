"""The services' lifecycle helpers: exit with the hub, who holds a port, a clear startup error."""

from __future__ import annotations

import errno
import os
import socket

import pytest

from jupyterhub_lab_ext.services.common.lifecycle import (
    bind_failure,
    describe_command,
    hub_pid_to_watch,
    port_holders,
    socket_inodes,
    watch_parent,
)
from jupyterhub_lab_ext.services.culler.app import LabIdleCuller
from jupyterhub_lab_ext.services.user_limit.app import UserLimitApp

MANAGED = {"JUPYTERHUB_SERVICE_NAME": "idle-culler"}


@pytest.mark.parametrize(
    "mode, env, pid, ppid, sid, expected",
    [
        ("auto", MANAGED, 50, 40, 50, 40),  # started by a hub: its own session
        ("auto", MANAGED, 50, 40, 30, None),  # a shell's job, not the hub's way
        ("auto", {}, 50, 40, 50, None),  # no service name: not started by a hub
        ("auto", MANAGED, 50, 1, 50, None),  # systemd started it
        ("auto", MANAGED, 1, 0, 1, None),  # pid 1 in a container
        ("on", {}, 50, 40, 30, 40),
        ("on", {}, 50, 1, 50, None),
        ("off", MANAGED, 50, 40, 50, None),
    ],
    ids=[
        "auto-managed",
        "auto-shell-job",
        "auto-no-name",
        "auto-systemd",
        "auto-container-init",
        "on",
        "on-init",
        "off",
    ],
)
def test_which_parent_is_watched(mode, env, pid, ppid, sid, expected):
    assert hub_pid_to_watch(mode, env=env, pid=pid, ppid=ppid, sid=sid) == expected


async def test_watch_parent_calls_back_once_the_parent_changes():
    answers = iter([40, 40, 40, 1])
    calls = []
    await watch_parent(40, lambda: calls.append("gone"), interval=0, getppid=lambda: next(answers))
    assert calls == ["gone"]


async def test_watch_parent_of_a_dead_parent_calls_back_at_once():
    calls = []
    await watch_parent(40, lambda: calls.append("gone"), interval=3600, getppid=lambda: 1)
    assert calls == ["gone"]


TCP_TABLE = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:2775 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1
   1: 0100007F:2775 0100007F:C350 06 00000000:00000000 03:00000A3D 00000000     0        0 0 3
   2: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 77 1
   3: 00000000:2775 0100007F:9C40 01 00000000:00000000 00:00000000 00000000  1000        0 555 1
   4: garbage
"""


def test_socket_inodes_of_a_port():
    # 0x2775 = 10101; TIME_WAIT (inode 0) holds nothing; other ports are left out
    assert socket_inodes(TCP_TABLE, 10101) == {4242, 555}
    assert socket_inodes(TCP_TABLE, 8080) == {77}
    assert socket_inodes(TCP_TABLE, 9) == set()


def test_port_holders_finds_this_process():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        holders = port_holders(port)
    assert [pid for pid, _ in holders] == [os.getpid()]
    assert holders[0][1]  # a command, however pytest was started


def test_describe_command_hides_option_values():
    argv = ["python", "--api-token=s3cret", "-m", "x"]
    assert describe_command(argv) == "python --api-token=... -m ..."
    assert describe_command(["node", "chp.js"]) == "node chp.js"
    assert describe_command(["a=b", "c"]) == "a=b c"  # not an option


def in_use():
    return OSError(errno.EADDRINUSE, os.strerror(errno.EADDRINUSE))


@pytest.mark.parametrize(
    "error, holders, expected",
    [
        (in_use(), [(123, "python -m x")], "held by pid 123 (python -m x)"),
        (in_use(), [], "no process holding it is visible to this account"),
        (in_use(), [], "exits by itself within a few seconds"),
        (OSError(errno.EACCES, "Permission denied"), [], "127.0.0.1:80: Permission denied"),
    ],
)
def test_bind_failure_message(error, holders, expected):
    port = 80 if error.errno == errno.EACCES else 10101
    message = bind_failure("127.0.0.1", port, error, holders)
    assert message.startswith(f"Cannot listen on 127.0.0.1:{port}: ")
    assert expected in message


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    for var in list(os.environ):
        if var.startswith("JUPYTERHUB_"):
            monkeypatch.delenv(var)
    monkeypatch.chdir(tmp_path)


@pytest.mark.parametrize("app_class", [LabIdleCuller, UserLimitApp])
def test_port_in_use_exits_1_naming_port_and_holder(app_class, clean_env, tmp_path, capsys):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        app = app_class()
        app.initialize(
            [
                "--url=http://127.0.0.1:9/hub/api",
                f"--db-url=sqlite:///{tmp_path}/db.sqlite",
                f"--ServiceApp.service_url=http://127.0.0.1:{port}",
            ]
        )
        app.api_token = "t" * 32
        with pytest.raises(SystemExit) as exit_info:
            app.start()
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert f"Cannot listen on 127.0.0.1:{port}: " in err
    assert f"held by pid {os.getpid()} (" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("value", ["auto", "on", "off", "ON"])
def test_exit_with_hub_trait(value, clean_env):
    app = LabIdleCuller()
    app.initialize([f"--ServiceApp.exit_with_hub={value}"])
    assert app.exit_with_hub.lower() == value.lower()


def test_exit_with_hub_rejects_other_values(clean_env, capsys):
    app = LabIdleCuller()
    with pytest.raises(SystemExit):
        app.initialize(["--ServiceApp.exit_with_hub=sometimes"])
    assert "'exit_with_hub' trait" in capsys.readouterr().err
