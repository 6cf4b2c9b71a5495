"""Run the demo hub: every part of jupyterhub-lab-ext on 127.0.0.1 with SQLite. Stop with Ctrl-C.

- login through a local OpenID Connect provider, restricted by a userlist you can edit live;
- the conda-kernel spawner with two shared environments (``base``; ``data`` with numpy and
  matplotlib) and one of alice's own;
- the idle culler and the user limit (at most 2 running servers) as hub-managed services.

Started by ``scripts/demo.sh`` after it installed everything; run from the demo venv. The
pieces live in ``devtools/demohub/``.
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from demohub import accounts, banner, config, envs, people
from demohub.check import DemoCheck
from demohub.layout import CULLER, USER_LIMIT, Layout, PortBusy, choose_ports

PREFIX = Path(os.environ.get("JHLE_PREFIX", "/opt/jupyterhub-lab-ext"))


class Stop(Exception):
    """Ctrl-C or SIGTERM while starting (once the hub runs, they just end the wait)."""


class Signals:
    """Ctrl-C/SIGTERM: interrupt the start-up at once, or end the wait of a running demo.

    A plain flag: a handler must not take locks (``threading.Event.set`` can deadlock when the
    signal arrives while the main thread holds the event's lock in ``wait``).
    """

    def __init__(self):
        self.stopped = False
        self.running = False

    def __call__(self, *_):
        if self.stopped:
            return  # a second Ctrl-C while stopping: stopping is under way
        self.stopped = True
        if not self.running:
            raise Stop


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--port", type=int, default=int(os.environ.get("JHLE_DEMO_PORT", 8765)))
    parser.add_argument("--provider-port", type=int, default=9765)
    parser.add_argument(
        "--workdir",
        default=os.environ.get("JHLE_DEMO_DIR", "/srv/jupyterhub-lab-ext-demo"),
        help="the demo's state: config, userlist, databases, logs",
    )
    parser.add_argument(
        "--envs-dir",
        default=str(PREFIX / "demo-envs"),
        help="where the shared conda-layout envs are built (once; reused by later runs)",
    )
    parser.add_argument("--home-root", default="/home", help="where the demo users' homes go")
    parser.add_argument(
        "--username-prefix", default="", help="prefix of the demo's system users (tests use one)"
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="start, verify every part (login, spawn form, a kernel in a shared env, idle "
        "culler, user limit), stop; exit 1 if anything failed",
    )
    return parser.parse_args(argv)


def wait_http(url: str, timeout: float, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
            raise SystemExit(f"demo: the process for {url} exited ({proc.returncode}):\n{tail}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise SystemExit(f"demo: {url} did not answer within {timeout:.0f} s; see {log}")


def prepare(layout: Layout) -> None:
    """State, config, JupyterLab defaults, envs and alice's account: idempotent."""
    w = layout.workdir
    w.mkdir(parents=True, exist_ok=True)
    w.chmod(0o700)
    layout.identities.write_text(json.dumps(people.IDENTITIES, indent=2))
    if not layout.client_secret_file.exists():
        layout.client_secret_file.write_text(secrets.token_hex(24))
    if not layout.userlist.exists():  # the person's live edits survive restarts
        layout.userlist.write_text(people.USERLIST)
    secret = layout.client_secret_file.read_text().strip()
    layout.config_file.write_text(config.hub_config(layout, secret))
    lab = config.lab_settings_path(layout)
    lab.parent.mkdir(parents=True, exist_ok=True)
    lab.write_text(config.lab_settings_text())
    for d in lab.parents[:5]:  # settings/overrides.d .. share/jupyter: readable by every user
        d.chmod(0o755)
    lab.chmod(0o644)
    shared = envs.ensure_shared(layout.envs_dir)
    layout.home_root.mkdir(parents=True, exist_ok=True)
    try:  # a warm start: alice and her ~/.conda exist already (building the authenticator: ~2 s)
        known = pwd.getpwnam(layout.username(people.ENV_OWNER))
        if os.path.lexists(Path(known.pw_dir) / ".conda"):
            return
    except KeyError:
        pass
    account = accounts.ensure_account(layout.config_file, people.ENV_OWNER)
    envs.ensure_personal(Path(account.home), account.uid, account.gid, shared["base"])


def start(argv: list[str], log: Path, cwd: Path) -> subprocess.Popen:
    env = dict(os.environ)
    env["PATH"] = (
        f"{PREFIX / 'venv' / 'bin'}:{PREFIX / 'node' / 'node_modules' / '.bin'}:{env['PATH']}"
    )
    with open(log, "ab") as out:
        return subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


def stop_all(procs: list[subprocess.Popen], layout: Layout) -> None:
    """SIGTERM each process group (the hub stops its servers, services and proxy), then wait.
    A hub that does not stop within 45 s is killed, and then its proxy too (own session)."""
    killed = False
    for proc in reversed(procs):
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(45)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                killed = True
    if killed:
        stop_proxy(layout)


def stop_proxy(layout: Layout) -> None:
    """Stop the proxy of this demo (by its PID file, if that PID is still our proxy)."""
    try:
        pid = int((layout.workdir / "chp.pid").read_text().strip())
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError):
        return
    if any(b"configurable-http-proxy" in a for a in argv) and (
        str(layout.proxy_api_port).encode() in argv
    ):
        os.kill(pid, signal.SIGTERM)


def run(layout: Layout, check: bool, signals: Signals) -> int:
    secret = layout.client_secret_file.read_text().strip()
    procs: list[subprocess.Popen] = []
    try:
        provider = start(
            ["node", str(layout.node_dir / "provider.mjs"), "--port", str(layout.provider_port),
             "--identities", str(layout.identities), "--client-id", "demo-hub",
             "--client-secret", secret, "--redirect-uri", layout.callback_url],
            layout.provider_log, layout.node_dir,
        )  # fmt: skip
        procs.append(provider)
        hub = start(  # both start at once; the hub does not need the provider until a login
            [str(layout.venv_bin / "jupyterhub"), "-f", str(layout.config_file)],
            layout.hub_log,
            layout.workdir,
        )
        procs.append(hub)
        wait_http(
            f"{layout.provider_url}/.well-known/openid-configuration",
            30,
            provider,
            layout.provider_log,
        )
        wait_http(f"{layout.hub_url}/hub/api/", 90, hub, layout.hub_log)
        for name in (CULLER, USER_LIMIT):
            wait_http(layout.service_url(name) + "health", 60, hub, layout.hub_log)
        print(banner.banner(layout, *who_may_log_in(layout)), flush=True)
        if check:  # Ctrl-C still interrupts
            steps = DemoCheck(layout).run()
            failed = [s.name for s in steps if not s.ok]
            print(f"check: {'FAILED: ' + ', '.join(failed) if failed else 'all parts work'}")
            return 1 if failed else 0
        signals.running = True
        while not signals.stopped and all(p.poll() is None for p in procs):
            time.sleep(0.5)  # a signal interrupts it and runs the handler
        for p in procs:
            if p.poll() is not None and not signals.stopped:
                print(f"demo: a process exited ({p.returncode}); see {layout.hub_log}")
                return 1
        return 0
    finally:
        print("demo: stopping the hub, its servers and services, and the provider ...", flush=True)
        stop_all(procs, layout)
        print("demo: stopped", flush=True)


def who_may_log_in(layout: Layout) -> tuple[list, str]:
    from jupyterhub_lab_ext.auth.userlist import UserlistParseError
    from jupyterhub_lab_ext.auth.userlist_file import load_userlist

    try:
        return people.verdicts(load_userlist(str(layout.userlist))), ""
    except UserlistParseError as e:
        return [], str(e)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        ports = choose_ports(args.port, args.provider_port)
    except PortBusy as e:
        print(f"demo: {e}", file=sys.stderr)
        return 2
    layout = Layout(
        prefix=PREFIX,
        workdir=Path(args.workdir),
        envs_dir=Path(args.envs_dir),
        home_root=Path(args.home_root),
        username_prefix=args.username_prefix,
        **ports,
    )
    signals = Signals()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signals)
    try:
        prepare(layout)
        return run(layout, args.check, signals)
    except Stop:
        return 130
    except envs.EnvBuildError as e:
        print(f"demo: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
