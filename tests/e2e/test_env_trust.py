"""Shared envs as an attacker sees them, and what the hub's log says about envs it skips.

A careless admin lists a world-writable (sticky, 1777) directory as a shared env dir, before the
safe one, and sets no ``default_env``. ``mallory`` plants ``shared/aaa`` there, a real env whose
``bin/python`` is her script: it leaves a mark named after whoever runs it, then runs Python. The
victim's default spawn would pick the first shared env, ``shared/aaa``. It must not: the env is
refused, the hub's log says why in one warning, ``jupyterhub-lab-ext envs`` shows it as refused,
and the planted script never runs.

The victim's home also holds decoys that discovery skips: an env without a kernel, an env owned by
root, a link to mallory's env, mallory's env and a plain directory listed in environments.txt. Each
must be one line in the hub's log (and in the single-user server's log, for the kernel list),
naming the user, the path and the reason, and not again on the next listing.
"""

from __future__ import annotations

import os
import pwd
import re
import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from envs import base_env, make_conda_env, trusted_dir
from harness import VENV_BIN, Hub, remove_test_users, run_in_kernel

PLANTED_PYTHON = """#!/bin/sh
touch "{marks}/ran-as-$(id -un)"
exec "$(dirname "$0")/python3" "$@"
"""


class Setup:
    def __init__(self, hub, victim, mallory, open_dir, safe, home, marks, decoys):
        self.hub, self.victim, self.mallory = hub, victim, mallory
        self.open_dir, self.safe, self.home, self.marks = open_dir, safe, home, marks
        self.decoys = decoys  # path -> reason, as the log must give them

    def hub_lines(self, needle: str) -> list[str]:
        """Lines of the hub's own logger (not the servers') that contain ``needle``."""
        return [
            line
            for line in self.hub.log_text().splitlines()
            if " JupyterHub " in line.split("]", 1)[0] and needle in line
        ]


def plant_shared_env(planted: Path, mallory: str, marks: Path) -> Path:
    """mallory, as herself, plants an env at ``planted`` (her env, her ``bin/python``)."""
    mallory_home = Path(pwd.getpwnam(mallory).pw_dir)
    make_conda_env(mallory_home / "build" / "aaa", owner=mallory)
    script = mallory_home / "python-script"
    script.write_text(PLANTED_PYTHON.format(marks=marks))
    shutil.chown(script, mallory)
    script.chmod(0o755)
    for argv in (
        ["cp", "-a", str(mallory_home / "build" / "aaa"), str(planted)],
        ["rm", str(planted / "bin" / "python")],
        ["cp", str(script), str(planted / "bin" / "python")],
    ):
        subprocess.run(["runuser", "-u", mallory, "--", *argv], check=True)
    assert os.stat(planted).st_uid == pwd.getpwnam(mallory).pw_uid
    return planted


def make_decoys(victim: str, mallory: str) -> dict[str, str]:
    """The victim's decoys: path -> the reason the log must give for skipping it."""
    home = Path(pwd.getpwnam(victim).pw_dir)
    envs_dir = home / ".conda" / "envs"
    nokernel = envs_dir / "nokernel"
    make_conda_env(nokernel, owner=victim)
    site_packages = next((nokernel / "lib").glob("python3.*")) / "site-packages"
    shutil.rmtree(site_packages / "ipykernel")
    (site_packages / "ipykernel_launcher.py").unlink()
    shutil.rmtree(nokernel / "share" / "jupyter" / "kernels")
    by_root = make_conda_env(envs_dir / "byroot")  # e.g. an admin's copy, owned by root
    mallory_home = Path(pwd.getpwnam(mallory).pw_dir)
    mallory_env = make_conda_env(mallory_home / "envs" / "evil", owner=mallory)
    os.symlink(mallory_env, envs_dir / "link")
    plain = home / "notes"
    plain.mkdir()
    txt = home / ".conda" / "environments.txt"
    txt.write_text(f"{mallory_env}\n{plain}\n")
    for p in (home / ".conda", envs_dir, txt, plain, envs_dir / "link"):
        os.lchown(p, pwd.getpwnam(victim).pw_uid, pwd.getpwnam(victim).pw_gid)
    outside = f"leads outside the home of {victim} and the user_env_dirs (to {mallory_env})"
    no_kernel = "an environment without any kernel (install ipykernel or a kernelspec into it)"
    return {
        str(nokernel): no_kernel,
        str(by_root): f"owned by root (uid 0), not by {victim}",
        str(envs_dir / "link"): outside,
        str(mallory_env): outside,
        str(plain): "not an environment (no conda-meta/)",
    }


@pytest.fixture(scope="module")
def setup(oidc, tmp_path_factory):
    prefix = f"jt{secrets.token_hex(2)}-"
    work = Path(tempfile.mkdtemp(prefix="jhle-trust-e2e-"))
    work.chmod(0o755)
    home_root = work / "homes"
    home_root.mkdir(mode=0o755)
    marks = work / "marks"
    marks.mkdir()
    marks.chmod(0o1777)
    trusted = trusted_dir("trust-e2e-")
    hub = None
    try:
        base_env()
        victim, mallory = f"{prefix}alice", f"{prefix}mallory"
        for name in (victim, mallory):
            subprocess.run(["useradd", "-m", "-b", str(home_root), name], check=True)
            oidc.set_identity(name, email=f"{name}@example.org", email_verified=True)
        home = Path(pwd.getpwnam(victim).pw_dir)

        safe = trusted / "conda" / "envs"
        make_conda_env(safe / "py")
        for p in (trusted / "conda", safe):
            p.chmod(0o755)
        open_dir = trusted / "open-envs"  # the careless admin's shared dir
        open_dir.mkdir(mode=0o755)
        open_dir.chmod(0o1777)

        planted = plant_shared_env(open_dir / "aaa", mallory, marks)
        decoys = make_decoys(victim, mallory)
        decoys[str(planted)] = (
            f"unsafe shared location: {open_dir} is writable by others (mode 1777)"
        )

        hub = Hub(
            tmp_path_factory.mktemp("trust-hub"),
            provider=oidc,
            authenticator="generic-local",
            home_root=home_root,
            username_prefix=prefix,
            config=f"""
            c.JupyterHub.spawner_class = "conda-kernel"
            c.CondaKernelSpawner.shared_env_dirs = [{str(open_dir)!r}, {str(safe)!r}]
            """,
        )
        hub.start()
        for name in (victim, mallory):
            resp = hub.api("POST", f"users/{name}")
            assert resp.status_code in (201, 409), resp.text
        yield Setup(hub, victim, mallory, open_dir, safe, home, marks, decoys)
    finally:
        if hub is not None:
            hub.stop()
        remove_test_users(prefix, [home_root])
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(trusted, ignore_errors=True)


def test_planted_shared_env_is_not_picked_by_another_users_default_spawn(setup):
    hub, victim = setup.hub, setup.victim
    try:
        resp = hub.start_server(victim, options={})
        assert resp.status_code in (201, 202), resp.text
        assert hub.user_model(victim)["servers"][""]["user_options"] == {"profile": "shared/py"}
        kernels = hub.server_api(victim, "GET", "kernelspecs").json()
        assert set(kernels["kernelspecs"]) == {"shared-py"} and kernels["default"] == "shared-py"
        # not startable by name either
        refused = hub.server_api(victim, "POST", "kernels", json={"name": "shared-aaa"})
        assert refused.status_code == 404, refused.text
        started = hub.server_api(victim, "POST", "kernels", json={})
        assert started.status_code == 201, started.text
        kid = started.json()["id"]
        out = run_in_kernel(hub, victim, kid, "import sys; print(sys.prefix)", timeout=90)
        assert out["error"] is None and out["stdout"].strip() == str(setup.safe / "py"), out
        hub.server_api(victim, "DELETE", f"kernels/{kid}")
    finally:
        if (hub.user_model(victim) or {}).get("servers"):
            hub.stop_server(victim)
    assert list(setup.marks.iterdir()) == []  # mallory's script never ran, as anybody

    planted = str(setup.open_dir / "aaa")
    (line,) = setup.hub_lines(f"skipped {planted}:")
    assert line.startswith("[W ") and f"user={victim} skipped {planted}: " in line
    assert line.endswith(setup.decoys[planted])


def test_cli_shows_the_planted_env_as_refused(setup):
    argv = [str(VENV_BIN / "jupyterhub-lab-ext"), "envs", setup.victim]
    argv += ["--config", str(setup.hub.config_path)]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=True).stdout
    offered, refused = out.split("Not offered (refused or skipped):\n")
    assert "* shared/py  [" in offered and "aaa" not in offered
    planted = str(setup.open_dir / "aaa")
    assert f"  {planted}: {setup.decoys[planted]}\n" in refused


def test_every_skipped_env_is_one_line_in_the_hub_log_and_the_server_log(setup):
    """Once in the hub's log for the hub's lifetime (this module's earlier spawns included), once
    in the log of each server (this test starts a new one)."""
    hub, victim = setup.hub, setup.victim
    server_start = len(hub.log_text())
    try:
        resp = hub.start_server(victim, options={})
        assert resp.status_code in (201, 202), resp.text
        for _ in range(3):  # kernel lists in the user's server
            assert hub.server_api(victim, "GET", "kernelspecs").status_code == 200
        client, form = hub.login(victim, next_url="/hub/spawn")  # one more listing on the hub
        client.close()
    finally:
        if (hub.user_model(victim) or {}).get("servers"):
            hub.stop_server(victim)
    text = hub.log_text()
    line_re = re.compile(
        r"^\[([IW]) [\d-]+ [\d:.]+ (JupyterHub|ServerApp)[^\]]*\] user=(\S+) skipped (\S+): (.*)$"
    )
    seen: dict[tuple[str, str], list[tuple[str, str, str]]] = {}
    for logger, part in (("JupyterHub", text), ("ServerApp", text[server_start:])):
        for line in part.splitlines():
            m = line_re.match(line)
            if m and m.group(2) == logger and m.group(3) == victim:
                level, _, _, path, reason = m.groups()
                seen.setdefault((logger, path), []).append((level, reason))
    for logger in ("JupyterHub", "ServerApp"):
        for path, reason in setup.decoys.items():
            entries = seen.get((logger, path))
            assert entries and len(entries) == 1, (logger, path, entries, text[-20_000:])
            level = "I" if "without any kernel" in reason or "not an environment" in reason else "W"
            assert entries[0] == (level, reason), (logger, path)
