"""The server's memory limit and OOM kills from fake cgroup trees (v1 and v2), and how the status
item words them."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone

import pytest

from jupyterhub_lab_ext.labserver.handlers import LabStatus
from jupyterhub_lab_ext.labserver.memory import Memory, memory_status, origin_text, read_memory
from jupyterhub_lab_ext.util import lab_status as names

M = 1024**2
OOM_CONTROL = "oom_kill_disable 0\nunder_oom 0\noom_kill {n}\n"
EVENTS = "low 0\nhigh 0\nmax 12\noom 3\noom_kill {n}\noom_group_kill 0\n"


def v1_tree(tmp_path, limit="268435456", kills=0, own="/"):
    """A cgroup v1 mount: /sys/fs/cgroup/memory (the container's own cgroup is its root)."""
    root = tmp_path / "cgroup"
    mem = root / "memory" / own.strip("/")
    mem.mkdir(parents=True)
    (mem / "memory.limit_in_bytes").write_text(f"{limit}\n")
    (mem / "memory.oom_control").write_text(OOM_CONTROL.format(n=kills))
    (root / "cpu").mkdir()
    proc = tmp_path / "proc-cgroup"
    proc.write_text(f"12:cpu,cpuacct:{own}\n9:memory:{own}\n1:name=systemd:{own}\n")
    return str(root), str(proc)


def v2_tree(tmp_path, limit="268435456", kills=0, own="/"):
    root = tmp_path / "cgroup2"
    root.mkdir()
    (root / "cgroup.controllers").write_text("cpu memory pids\n")
    mem = root / own.strip("/")
    mem.mkdir(parents=True, exist_ok=True)
    (mem / "memory.max").write_text(f"{limit}\n")
    (mem / "memory.events").write_text(EVENTS.format(n=kills))
    proc = tmp_path / "proc-cgroup"
    proc.write_text(f"0::{own}\n")
    return str(root), str(proc)


@pytest.mark.parametrize("tree", [v1_tree, v2_tree], ids=["v1", "v2"])
def test_limit_and_kills_of_the_containers_cgroup(tmp_path, tree):
    root, proc = tree(tmp_path, kills=2)
    assert read_memory(root, proc) == Memory(limit=256 * M, oom_kills=2)


@pytest.mark.parametrize("tree", [v1_tree, v2_tree], ids=["v1", "v2"])
def test_own_cgroup_below_the_mount(tmp_path, tree):
    """Without a cgroup namespace, the process's own directory (from /proc/self/cgroup)."""
    root, proc = tree(tmp_path, limit=str(512 * M), kills=1, own="/docker/abc")
    assert read_memory(root, proc) == Memory(limit=512 * M, oom_kills=1)


@pytest.mark.parametrize(
    "tree, unlimited", [(v1_tree, "9223372036854771712"), (v2_tree, "max")], ids=["v1", "v2"]
)
def test_no_limit(tmp_path, tree, unlimited):
    root, proc = tree(tmp_path, limit=unlimited)
    assert read_memory(root, proc) == Memory(limit=None, oom_kills=0)
    assert memory_status(read_memory(root, proc), "group:x", 0) == {
        "state": "unknown",
        "oom_kills": None,
    }


def test_no_cgroup_info_at_all(tmp_path):
    assert read_memory(str(tmp_path / "none"), str(tmp_path / "none")) == Memory()
    (tmp_path / "cg" / "memory").mkdir(parents=True)  # v1 mount without the files (old kernel)
    assert read_memory(str(tmp_path / "cg"), str(tmp_path / "none")) == Memory()


def test_old_kernel_without_the_oom_kill_counter(tmp_path):
    root, proc = v1_tree(tmp_path)
    (tmp_path / "cgroup" / "memory" / "memory.oom_control").write_text("oom_kill_disable 0\n")
    assert read_memory(root, proc) == Memory(limit=256 * M, oom_kills=None)
    status = memory_status(read_memory(root, proc), None, 0)
    assert status["oom_kills"] is None and status["detail"] == "Memory limit: 256 MB"


@pytest.mark.parametrize(
    "origin, text",
    [
        ("group:students", "your group students"),
        ("env:shared/big", "the environment shared/big"),
        ("*", "the hub's default for everyone"),
        (None, ""),
        ("bogus", ""),
    ],
)
def test_origin_text(origin, text):
    assert origin_text(origin) == text


def test_message_names_the_limit_and_its_origin_and_counts_since_start():
    status = memory_status(Memory(limit=256 * M, oom_kills=5), "group:students", baseline=4)
    assert status["oom_kills"] == 1
    assert status["limit_text"] == "256 MB, your group students"
    assert status["detail"] == "Memory limit: 256 MB, your group students; kernels stopped by it: 1"
    assert status["message"].startswith(
        "A kernel was stopped by your server's memory limit (256 MB, your group students)."
    )
    assert len(status["message"]) <= 140  # JupyterLab cuts a notification there
    assert "ask the hub's administrators" in status["advice"]
    assert "advice" not in memory_status(Memory(limit=256 * M, oom_kills=4), None, baseline=4)


def test_status_document_counts_kills_after_the_server_started(tmp_path):
    root, proc = v1_tree(tmp_path, kills=3)  # e.g. a cgroup shared with earlier servers
    environ = {names.ENV_MEM_LIMIT_FROM: "group:students"}
    clock = lambda: datetime(2026, 12, 3, tzinfo=timezone.utc)  # noqa: E731
    lab = LabStatus(environ, clock=clock, memory=lambda: read_memory(root, proc))
    doc = asyncio.run(lab.status())
    assert doc["memory"]["oom_kills"] == 0
    assert "Memory limit: 256 MB, your group students" in doc["details"]
    (tmp_path / "cgroup" / "memory" / "memory.oom_control").write_text(OOM_CONTROL.format(n=4))
    doc = asyncio.run(lab.status())
    assert doc["memory"]["oom_kills"] == 1
    assert doc["details"][-2:] == [
        "Memory limit: 256 MB, your group students; kernels stopped by it: 1",
        doc["memory"]["advice"],
    ]
    assert doc["memory"]["since"] == "2026-12-03T00:00:00+00:00"
    no_cgroup = LabStatus({}, clock=clock, memory=Memory)
    assert asyncio.run(no_cgroup.status())["memory"]["state"] == "unknown"
