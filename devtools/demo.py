"""Run the demo hub: a local OpenID Connect provider, the userlist authenticator, the conda-kernel
spawner with a shared demo environment, SQLite, everything on 127.0.0.1. Stop with Ctrl-C.

Started by ``scripts/demo.sh`` after it installed everything; run from the demo venv.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PREFIX = Path(os.environ.get("JHLE_PREFIX", "/opt/jupyterhub-lab-ext"))
VENV_BIN = PREFIX / "venv" / "bin"
NODE_DIR = PREFIX / "node"

IDENTITIES = {
    "alice": {"email": "alice@example.org", "email_verified": True, "groups": ["staff"]},
    "bob": {"email": "bob@example.org", "email_verified": True, "groups": ["students"]},
    "carol": {"email": "carol@example.org", "email_verified": True},
    # an email identity whose provider says the address is not verified: refused
    "mallory": {
        "preferred_username": "mallory@example.org",
        "email": "mallory@example.org",
        "email_verified": False,
    },
}


def wait_http(url: str, timeout: float, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"demo: process for {url} exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise SystemExit(f"demo: {url} did not answer within {timeout}s")


def write_config(workdir: Path, port: int, provider_port: int, secret: str, args) -> Path:
    userlist = workdir / "userlist"
    if not userlist.exists():
        userlist.write_text(
            "# Demo userlist: IDENTITY [admin] [group:NAME ...]; edits apply without a restart.\n"
            "alice admin group:staff\n"
            "bob group:students\n"
            "# carol is not listed: she is refused until an admin adds her here or on the admin page.\n"
            "mallory@example.org\n"
        )
    config = workdir / "jupyterhub_config.py"
    config.write_text(f"""\
c = get_config()  # noqa
c.JupyterHub.ip = "127.0.0.1"
c.JupyterHub.port = {port}
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = {port + 1}
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{port + 2}"
c.ConfigurableHTTPProxy.pid_file = "{workdir}/chp.pid"
c.JupyterHub.db_url = "sqlite:///{workdir}/jupyterhub.sqlite"
c.JupyterHub.cookie_secret_file = "{workdir}/cookie_secret"

c.JupyterHub.authenticator_class = "userlist"
c.UserlistOAuthenticator.client_id = "demo-hub"
c.UserlistOAuthenticator.client_secret = "{secret}"
c.UserlistOAuthenticator.oauth_callback_url = "http://127.0.0.1:{port}/hub/oauth_callback"
c.UserlistOAuthenticator.authorize_url = "http://127.0.0.1:{provider_port}/auth"
c.UserlistOAuthenticator.token_url = "http://127.0.0.1:{provider_port}/token"
c.UserlistOAuthenticator.userdata_url = "http://127.0.0.1:{provider_port}/me"
c.UserlistOAuthenticator.username_claim = "preferred_username"
c.UserlistOAuthenticator.scope = ["openid", "profile", "email", "groups"]
c.UserlistOAuthenticator.login_service = "the demo provider"
c.UserlistOAuthenticator.userlist_file = "{userlist}"
c.UserlistOAuthenticator.home_template = "{REPO}/example_config/home-template"
c.UserlistOAuthenticator.home_mode = 0o700
c.UserlistOAuthenticator.home_root = "{args.home_root}"
c.UserlistOAuthenticator.username_prefix = "{args.username_prefix}"
c.UserlistOAuthenticator.system_users_state_dir = "{workdir}/accounts"

c.Spawner.cmd = ["{VENV_BIN}/jupyterhub-singleuser"]
c.Spawner.default_url = "/lab"
""")
    extra = REPO / "example_config" / "demo_extra_config.py"
    if extra.exists():
        config.write_text(config.read_text() + "\n" + extra.read_text())
    return config


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=int(os.environ.get("JHLE_DEMO_PORT", 8765)))
    parser.add_argument("--provider-port", type=int, default=9765)
    parser.add_argument(
        "--workdir", default=os.environ.get("JHLE_DEMO_DIR", "/srv/jupyterhub-lab-ext-demo")
    )
    parser.add_argument("--home-root", default="/home", help="where the demo users' homes go")
    parser.add_argument(
        "--username-prefix", default="", help="prefix of the demo's system users (tests use one)"
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="start, verify that the hub answers, then stop (for CI smoke tests)",
    )
    args = parser.parse_args()
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    workdir.chmod(0o700)
    (workdir / "identities.json").write_text(json.dumps(IDENTITIES, indent=2))
    secret_file = workdir / "client_secret"
    if not secret_file.exists():
        secret_file.write_text(secrets.token_hex(24))
    secret = secret_file.read_text().strip()
    config = write_config(workdir, args.port, args.provider_port, secret, args)

    env = dict(os.environ, PATH=f"{VENV_BIN}:{NODE_DIR}/node_modules/.bin:{os.environ['PATH']}")
    procs: list[subprocess.Popen] = []
    try:
        provider = subprocess.Popen(
            [
                "node",
                str(NODE_DIR / "provider.mjs"),
                "--port",
                str(args.provider_port),
                "--identities",
                str(workdir / "identities.json"),
                "--client-id",
                "demo-hub",
                "--client-secret",
                secret,
                "--redirect-uri",
                f"http://127.0.0.1:{args.port}/hub/oauth_callback",
            ],
            cwd=NODE_DIR,
            env=env,
            start_new_session=True,
        )
        procs.append(provider)
        wait_http(
            f"http://127.0.0.1:{args.provider_port}/.well-known/openid-configuration", 30, provider
        )
        hub = subprocess.Popen(
            [str(VENV_BIN / "jupyterhub"), "-f", str(config)],
            cwd=workdir,
            env=env,
            start_new_session=True,
        )
        procs.append(hub)
        wait_http(f"http://127.0.0.1:{args.port}/hub/api/", 90, hub)
        print(
            f"""
==> Demo hub running at http://127.0.0.1:{args.port}/
    Log in with any password as: alice (admin), bob (group students).
    carol is not in the userlist (refused); mallory has an unverified email (refused).
    Userlist: {workdir}/userlist (edit it while the hub runs). Stop with Ctrl-C.
""",
            flush=True,
        )
        if args.check:
            return 0
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        while not stop.is_set() and all(p.poll() is None for p in procs):
            stop.wait(1)
        return 0
    finally:
        for proc in reversed(procs):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()


if __name__ == "__main__":
    sys.exit(main())
