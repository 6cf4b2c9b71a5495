"""The culler's command line: jupyterhub-idle-culler's flag names, config file, env defaults."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from jupyterhub_lab_ext.services.culler.app import LabIdleCuller

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    for var in list(os.environ):
        if var.startswith("JUPYTERHUB_"):
            monkeypatch.delenv(var)
    monkeypatch.chdir(tmp_path)


def make(*argv):
    app = LabIdleCuller()
    app.initialize(list(argv))
    return app


def test_upstream_flags_same_meaning():
    app = make(
        "--url=http://127.0.0.1:8081/hub/api",
        "--timeout=100",
        "--cull-every=7",
        "--concurrency=3",
        "--max-age=5000",
        "--cull-users=True",
        "--remove-named-servers=True",
        "--cull-admin-users=False",
        "--api-page-size=20",
        "--cull-default-servers=False",
        "--cull-named-servers=True",
    )
    assert app.url == "http://127.0.0.1:8081/hub/api"
    pol = app.make_policy()
    assert (pol.timeout, pol.max_age, pol.cull_users, pol.cull_admin_users) == (
        100,
        5000,
        True,
        False,
    )
    assert (pol.cull_default_servers, pol.cull_named_servers) == (False, True)
    assert (app.cull_every, app.concurrency, app.api_page_size) == (7, 3, 20)
    assert app.remove_named_servers is True


@pytest.mark.parametrize(
    "argv, every",
    [(["--timeout=600"], 300), (["--timeout=3600"], 1800), (["--timeout=1"], 1), ([], 300)],
)
def test_cull_every_defaults_to_half_the_timeout(argv, every):
    assert make(*argv).cull_every == every


@pytest.mark.parametrize(
    "flag",
    ["--cull-every=0", "--concurrency=0", "--timeout=0", "--max-age=-1", "--api-page-size=-5"],
)
def test_bad_numbers_refused(flag, capsys):
    with pytest.raises(SystemExit):
        make(flag)
    assert flag.split("=")[0].lstrip("-").replace("-", "_") in capsys.readouterr().err


def test_env_defaults(monkeypatch):
    monkeypatch.setenv("JUPYTERHUB_API_URL", "http://127.0.0.1:9/hub/api")
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", "t")
    monkeypatch.setenv("JUPYTERHUB_SERVICE_NAME", "my-culler")
    monkeypatch.setenv("JUPYTERHUB_SERVICE_URL", "http://127.0.0.1:10101")
    app = make()
    assert (app.url, app.api_token, app.service_name) == (
        "http://127.0.0.1:9/hub/api",
        "t",
        "my-culler",
    )
    assert app.service_prefix == "/services/my-culler/"
    assert app.service_url == "http://127.0.0.1:10101"
    assert app.db_url == "sqlite:///my-culler.sqlite"


def test_config_file_and_cli_precedence(tmp_path):
    cfg = tmp_path / "culler_config.py"
    cfg.write_text(
        "c.LabIdleCuller.timeout = 100\n"
        "c.LabIdleCuller.group_timeouts = {'teachers': 28800}\n"
        "c.LabIdleCuller.exempt_users = ['admin']\n"
    )
    app = make(f"--config={cfg}", "--timeout=200")
    assert app.timeout == 200  # the command line wins
    pol = app.make_policy()
    assert dict(pol.group_timeouts) == {"teachers": 28800} and pol.exempt_users == {"admin"}


def test_reads_jupyterhub_idle_culler_config_files(tmp_path, capsys):
    """A config file written for jupyterhub-idle-culler works unchanged."""
    cfg = tmp_path / "idle_culler_config.py"
    cfg.write_text(
        "c.IdleCuller.timeout = 1234\n"
        "c.IdleCuller.cull_users = True\n"
        "c.IdleCuller.cull_arbiter_hook = lambda **kw: True\n"
        "c.LabIdleCuller.concurrency = 7\n"
    )
    app = make(f"--config={cfg}", "--cull-every=5")
    assert (app.timeout, app.cull_users, app.concurrency, app.cull_every) == (1234, True, 7, 5)
    assert "Ignoring c.IdleCuller.cull_arbiter_hook" in capsys.readouterr().err


def test_default_config_file_in_cwd(tmp_path):
    (tmp_path / "jupyterhub_lab_idle_culler_config.py").write_text("c.LabIdleCuller.timeout = 42\n")
    assert make().timeout == 42


def test_missing_config_file_fails(tmp_path):
    with pytest.raises(SystemExit):
        make(f"--config={tmp_path}/nope.py")


def run_cli(*args, timeout=60):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "jupyterhub_lab_ext.services.culler", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )


def test_generate_config():
    proc = run_cli("--generate-config")
    assert proc.returncode == 0, proc.stderr
    assert "c.LabIdleCuller.timeout" in proc.stdout
    assert "c.LabIdleCuller.group_timeouts" in proc.stdout
    assert "c.ServiceApp.url" in proc.stdout


def test_help_lists_upstream_flags():
    proc = run_cli("--help")
    assert proc.returncode == 0, proc.stderr
    for flag in (
        "--timeout",
        "--cull-every",
        "--concurrency",
        "--max-age",
        "--cull-users",
        "--api-page-size",
    ):
        assert flag in proc.stdout


def test_refuses_to_start_without_token():
    proc = run_cli("--url=http://127.0.0.1:9/hub/api")
    assert proc.returncode == 1
    assert "JUPYTERHUB_API_TOKEN" in proc.stderr
