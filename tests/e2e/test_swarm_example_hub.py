"""The multi-node example's hub config starts a real hub the way docker-stack.yml runs it.

``example_config/docker/swarm/jupyterhub_config.py`` on top of ``example_config/jupyterhub_config.py``:
the hub database is a PostgreSQL that demands a password (scram), which only ``$PGPASSFILE``
holds (a Docker secret in the stack; the config's URL has none), the cookie secret comes from a
0400 file in the secrets directory, and the hub API listens on ``HUB_ADDRESS`` (127.0.0.1 here).
No Docker: no server is spawned here (test_swarm_multinode.py runs servers on a real swarm).
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path

import httpx
import psycopg
import pytest
from harness import Fatal, Process, child_env, free_port, wait_until

REPO = Path(__file__).resolve().parents[2]
BASE_CONFIG = REPO / "example_config" / "jupyterhub_config.py"
SWARM_CONFIG = REPO / "example_config" / "docker" / "swarm" / "jupyterhub_config.py"
PG_BIN = Path("/usr/lib/postgresql/15/bin")


def as_postgres(*argv: str) -> None:
    subprocess.run(["runuser", "-u", "postgres", "--", *argv], check=True, capture_output=True)


@pytest.fixture
def scram_postgres():
    """A PostgreSQL on 127.0.0.1 with password authentication only, and the database of the
    stack's postgres service (role and database ``jupyterhub``); yields (port, password)."""
    root = Path(tempfile.mkdtemp(prefix="jhle-pgscram-"))
    root.chmod(0o755)  # the postgres user must reach its cluster directory
    cluster = root / "cluster"
    cluster.mkdir(mode=0o700)
    shutil.chown(cluster, "postgres")
    superuser_password = secrets.token_hex(16)
    pwfile = cluster / "pw"
    pwfile.write_text(superuser_password)
    shutil.chown(pwfile, "postgres")
    as_postgres(str(PG_BIN / "initdb"), "-A", "scram-sha-256", "-U", "postgres",
                f"--pwfile={pwfile}", "-D", str(cluster / "data"))  # fmt: skip
    port = free_port()
    server = Process(
        ["runuser", "-u", "postgres", "--", str(PG_BIN / "postgres"), "-D", str(cluster / "data"),
         "-c", "listen_addresses=127.0.0.1", "-c", f"port={port}",
         "-c", f"unix_socket_directories={cluster}"],
        log_path=root / "postgres.log",
    )  # fmt: skip
    server.start()
    try:
        admin = f"postgresql://postgres:{superuser_password}@127.0.0.1:{port}/postgres"
        wait_until(lambda: psycopg.connect(admin, connect_timeout=2).close() or True,
                   timeout=30, what="postgres ready")  # fmt: skip
        password = secrets.token_hex(16)
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"CREATE ROLE jupyterhub LOGIN PASSWORD '{password}'")
            conn.execute("CREATE DATABASE jupyterhub OWNER jupyterhub")
        yield port, password
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


def write_secret(path: Path, text: str) -> Path:
    path.touch(mode=0o400)
    path.chmod(0o600)
    path.write_text(text)
    path.chmod(0o400)
    return path


def test_the_swarm_example_hub_starts_on_postgres_with_its_secrets(scram_postgres, tmp_path):
    port, password = scram_postgres
    run_secrets = tmp_path / "secrets"
    run_secrets.mkdir()
    write_secret(run_secrets / "jupyterhub_cookie_secret", secrets.token_hex(32) + "\n")
    pgpass = write_secret(
        run_secrets / "jupyterhub_pgpass", f"127.0.0.1:{port}:jupyterhub:jupyterhub:{password}\n"
    )
    # without the password the database refuses the config's URL: the pgpass is what gets in
    no_password = f"postgresql://jupyterhub@127.0.0.1:{port}/jupyterhub"
    with pytest.raises(psycopg.OperationalError, match="password"):
        psycopg.connect(no_password, passfile=str(tmp_path / "none"), connect_timeout=5)

    state = tmp_path / "state"
    for name in ("state", "state-services", "state-lab-ext"):
        (tmp_path / name).mkdir()
    hub_port = free_port()
    env = child_env(
        JUPYTERHUB_BASE_CONFIG=str(BASE_CONFIG),
        HUB_ADDRESS="127.0.0.1",
        JUPYTERHUB_DB_URL=f"postgresql+psycopg://jupyterhub@127.0.0.1:{port}/jupyterhub",
        PGPASSFILE=str(pgpass),
        JUPYTERHUB_SECRETS_DIR=str(run_secrets),
        JUPYTERHUB_STATE_DIR=str(state),
        # the services as their own units: this test starts no service account's processes
        JUPYTERHUB_SERVICES="systemd",
        IDLE_CULLER_API_TOKEN=secrets.token_hex(16),
        USER_LIMIT_API_TOKEN=secrets.token_hex(16),
        USER_LIMIT_HOOK_TOKEN=secrets.token_hex(32),
        OAUTH_CLIENT_ID="lab-hub",
        OAUTH_CLIENT_SECRET=secrets.token_hex(16),
        OIDC_ISSUER="https://127.0.0.1:9/realms/none",  # only read at the first login
        JUPYTERHUB_PUBLIC_URL="http://127.0.0.1/jupyter/",
        JUPYTERHUB_PORT=str(free_port()),
        JUPYTERHUB_HUB_PORT=str(hub_port),
        JUPYTERHUB_PROXY_API_PORT=str(free_port()),
        IDLE_CULLER_PORT=str(free_port()),
        USER_LIMIT_PORT=str(free_port()),
    )
    env.pop("PGPASSWORD", None)
    hub = Process(
        ["jupyterhub", f"--config={SWARM_CONFIG}"],
        log_path=tmp_path / "hub.log",
        cwd=state,
        env=env,
    )
    hub.start()
    try:

        def running():
            if not hub.alive():
                raise Fatal("the hub exited:\n" + hub.log_text()[-3000:])
            return "JupyterHub is now running" in hub.log_text()

        wait_until(running, timeout=90, what="the hub to start")
        answer = httpx.get(f"http://127.0.0.1:{hub_port}/jupyter/hub/api/", timeout=10)
        assert answer.status_code == 200 and "version" in answer.json()
        log = hub.log_text()
        assert f"Loading cookie_secret from {run_secrets / 'jupyterhub_cookie_secret'}" in log
        assert not (state / "jupyterhub_cookie_secret").exists()
        # the hub's tables and its services are in PostgreSQL
        with psycopg.connect(no_password, passfile=str(pgpass)) as conn:
            names = {row[0] for row in conn.execute("SELECT name FROM services")}
        assert names == {"idle-culler", "user-limit"}
    finally:
        hub.stop()
