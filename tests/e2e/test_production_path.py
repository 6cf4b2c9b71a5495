"""The production path of docs/deployment.md, driven for real, as an admin would follow it.

- ``example_config/jupyterhub_config.py`` installed unchanged; the site comes from the
  environment file the docs tell the admin to fill in;
- the hub started from ``systemd/jupyterhub.service`` (its ExecStart, Environment,
  EnvironmentFile, WorkingDirectory), stopped the way its ``KillMode=process`` stops it;
- Debian's nginx with ``nginx/jupyterhub.conf`` and TLS, set up in the docs' order from nothing
  (a self-signed pair first, ``nginx -t``, then the "certbot" certificate by symlink);
- login over https through an OpenID Connect provider known by its issuer alone (discovery);
  a kernel over a websocket through nginx; both services through nginx, without a consent page;
- the services moved to their own units (``JUPYTERHUB_SERVICES=systemd``): the restarted hub
  routes at once although they are not up yet, users' servers and kernels survive the restart;
- the admin commands (``userlist check --config``, ``upgrade-db``) from a shell without the
  hub's secrets; ``systemd-analyze verify`` on the three units.

Where this machine differs from the docs' (a temp root instead of /etc and /var/lib, free ports
on 127.0.0.1, a prefixed services account, the test venv), the shipped files are rewritten by
the substitution tables below; every substitution must match, so the files cannot drift away
from what is tested.
"""

from __future__ import annotations

import json
import os
import pwd
import secrets
import shutil
import signal
import subprocess
from pathlib import Path
from urllib.parse import urljoin, urlparse

import httpx
import pytest
from envs import trusted_dir
from harness import (
    ARTIFACTS,
    PREFIX,
    SYSTEM_PATH,
    VENV_BIN,
    Process,
    execute_code,
    oidc_login,
    parse_forms,
    processes_of_uid,
    wait_until,
)
from prodsite import BASE, EXAMPLES, UNITS, Site, stop_main_process, substitute, unit_process


def api_answers(site: Site, process: Process) -> bool:
    if not process.alive():
        raise AssertionError("the hub exited:\n" + process.log_text()[-4000:])
    with site.client() as c:
        resp = c.get(site.url("hub/api/"))  # the docs' check
    return resp.status_code == 200 and "version" in resp.json()


def login(site: Site) -> httpx.Client:
    client = site.client()
    base = site.public.rstrip("/")
    _, resp = oidc_login(
        base, site.provider.url, site.user, next_url=f"{BASE}hub/spawn", client=client
    )
    assert resp.status_code == 200, (resp.url, resp.text[:500])
    return client


def visit_service(site: Site, client: httpx.Client, name: str) -> dict:
    """A browser visit to a service from the hub's Services menu: hub OAuth, no consent page,
    the service's admin page; then the service's index as JSON (who it says you are)."""
    resp = client.get(site.url(f"services/{name}/"), headers={"Accept": "text/html"})
    assert urlparse(str(resp.url)).path == f"{BASE}services/{name}/dashboard", (
        f"{name}: ended on {resp.url} (a consent page?)\n{resp.text[:300]}"
    )
    assert "Authorize access" not in resp.text
    assert resp.status_code == 200, resp.text[:300]
    index = client.get(site.url(f"services/{name}/"), headers={"Accept": "application/json"})
    assert index.status_code == 200, index.text[:300]
    return index.json()


def wait_services(site: Site, processes: list[Process]) -> None:
    def healthy():
        for p in processes:
            if not p.alive():
                raise AssertionError(f"{p.argv} exited:\n{p.log_text()[-3000:]}")
        with site.client() as c:
            return all(
                c.get(site.url(f"services/{n}/health")).status_code == 200
                for n in ("idle-culler", "user-limit")
            )

    wait_until(healthy, timeout=60, what="both services' health through nginx")


def admin_env(site: Site, **extra: str) -> dict[str, str]:
    """A root shell: PATH, nothing from the hub's environment file (JUPYTERHUB_STATE_DIR only
    because this machine's hub state is not in /var/lib/jupyterhub)."""
    return {"PATH": f"{VENV_BIN}:{SYSTEM_PATH}", "JUPYTERHUB_STATE_DIR": str(site.state), **extra}


@pytest.fixture
def site(request, oidc, user_prefix, home_root):
    # shared envs live under it: every directory up to / must be root-only writable (not /tmp)
    root = trusted_dir("jhle-prod-")
    root.chmod(0o755)
    s = Site(root, user_prefix, home_root, oidc)
    oidc.set_identity(s.user, email=f"{s.user}@example.org", email_verified=True)
    try:
        yield s
    finally:
        for p in reversed(s.processes):
            p.stop()
        pid_file = s.state / "jupyterhub-proxy.pid"
        try:
            pid = int(pid_file.read_text().strip())
            if b"configurable-http-proxy" in Path(f"/proc/{pid}/cmdline").read_bytes():
                os.kill(pid, signal.SIGTERM)
        except (FileNotFoundError, ValueError, ProcessLookupError):
            pass
        # the logs stay in test-artifacts/production-path/ (tokens are never logged)
        kept = ARTIFACTS / "production-path"
        shutil.rmtree(kept, ignore_errors=True)
        kept.mkdir(parents=True)
        for log in sorted(s.logs.glob("*.log")):
            shutil.copy(log, kept / log.name)
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            for log in sorted(s.logs.glob("*.log")):
                print(f"--- {log.name} ---\n{log.read_text(errors='replace')[-3000:]}")
        shutil.rmtree(root, ignore_errors=True)


def started(site: Site, process: Process) -> Process:
    site.processes.append(process)
    process.start()
    return process


def test_units_pass_systemd_analyze_verify(tmp_path):
    units = []
    for name in UNITS:
        text = (EXAMPLES / "systemd" / name).read_text()
        path = tmp_path / name
        # the binaries must exist: the test venv instead of /opt/jupyterhub-lab-ext
        path.write_text(substitute(text, [("/opt/jupyterhub-lab-ext", str(PREFIX))], name))
        units.append(str(path))
    done = subprocess.run(["systemd-analyze", "verify", *units], capture_output=True, text=True)
    assert (done.returncode, done.stdout + done.stderr) == (0, "")
    # it does report mistakes (it exits 0 on most of them, hence the check of its output)
    Path(units[0]).write_text(Path(units[0]).read_text().replace("KillMode=", "KilMode="))
    done = subprocess.run(["systemd-analyze", "verify", units[0]], capture_output=True, text=True)
    assert "Unknown key" in done.stderr


def setup_nginx(s: Site) -> None:
    """docs/deployment.md, "nginx in front": from nothing to https, in the documented order."""
    conf = s.nginx_conf()
    assert s.nginx_test(conf).returncode != 0, "without a certificate nginx -t fails"
    s.self_signed(s.nginx / "tls" / "jupyterhub.crt", s.nginx / "tls" / "jupyterhub.key")
    tested = s.nginx_test(conf)
    assert tested.returncode == 0, tested.stderr
    # ... then "certbot"'s certificate (here one for 127.0.0.1) linked over the pair
    s.cert.parent.mkdir()
    key = s.cert.parent / "privkey.pem"
    s.self_signed(s.cert, key, "/CN=127.0.0.1", "subjectAltName=IP:127.0.0.1")
    for name, target in (("jupyterhub.crt", s.cert), ("jupyterhub.key", key)):
        (s.nginx / "tls" / name).unlink()
        (s.nginx / "tls" / name).symlink_to(target)
    tested = s.nginx_test(conf)
    assert tested.returncode == 0, tested.stderr
    nginx = ["nginx", "-p", str(s.nginx), "-e", str(s.nginx / "error.log"), "-c", str(conf)]
    started(s, Process([*nginx, "-g", "daemon off;"], log_path=s.logs / "nginx.log"))


def check_userlist(s: Site) -> list[str]:
    """The docs' ``jupyterhub-lab-ext userlist check --config ...`` from a root shell."""
    argv = [
        "jupyterhub-lab-ext",
        "userlist",
        "check",
        "--config",
        str(s.etc / "jupyterhub_config.py"),
    ]
    done = subprocess.run(argv, env=admin_env(s), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def start_hub(s: Site, log: str, timeout: float) -> Process:
    hub = started(s, unit_process(s.units / "jupyterhub.service", s.logs / log))
    wait_until(lambda: api_answers(s, hub), timeout=timeout, what="GET /jupyter/hub/api/ via nginx")
    return hub


def spawn(s: Site, client: httpx.Client) -> dict[str, str]:
    """Pick the shared env on the spawn form; return the user's token header once it runs."""
    spawn_page = client.get(s.url("hub/spawn"))
    assert 'value="shared/python3"' in spawn_page.text and "jhle-env-notice" not in spawn_page.text
    (form,) = [f for f in parse_forms(spawn_page.text) if f["method"] == "post"]
    # the page's script sends the _xsrf cookie's value with the form, as a browser does
    jar = client.cookies.jar
    xsrf = next(c.value for c in jar if c.name == "_xsrf" and c.path == f"{BASE}hub/")
    data = dict(form["inputs"], profile="shared/python3", _xsrf=xsrf)
    resp = client.post(urljoin(str(spawn_page.url), form["action"]), data=data)
    assert resp.status_code == 200, resp.text[:300]
    resp = client.post(
        s.url(f"hub/api/users/{s.user}/tokens"),
        json={"note": "production-path test", "expires_in": 900},
        headers={"X-XSRFToken": xsrf},
    )
    assert resp.status_code == 201, resp.text
    auth = {"Authorization": f"token {resp.json()['token']}"}

    def server_ready():
        model = client.get(s.url(f"hub/api/users/{s.user}"), headers=auth).json()
        return (model.get("servers") or {}).get("", {}).get("ready")

    wait_until(server_ready, timeout=150, what="the user's server ready")
    return auth


def services_as_units(s: Site) -> None:
    """docs: "The services as their own units": tokens in the env files, the switch."""
    tokens = {k: secrets.token_hex(24) for k in ("culler", "limit", "hook")}
    s.write_env_file(
        JUPYTERHUB_SERVICES="systemd",
        IDLE_CULLER_API_TOKEN=tokens["culler"],
        USER_LIMIT_API_TOKEN=tokens["limit"],
        USER_LIMIT_HOOK_TOKEN=tokens["hook"],
    )
    units = {
        "idle-culler": {"JUPYTERHUB_API_TOKEN": tokens["culler"]},
        "user-limit": {
            "JUPYTERHUB_API_TOKEN": tokens["limit"],
            "JUPYTERHUB_USER_LIMIT_HOOK_TOKEN": tokens["hook"],
        },
    }
    for name, values in units.items():
        # the units' comment: with other ports, override these in the env file
        port = s.ports["culler" if name == "idle-culler" else "limit"]
        values["JUPYTERHUB_API_URL"] = f"http://127.0.0.1:{s.ports['hub']}{BASE}hub/api"
        values["JUPYTERHUB_SERVICE_URL"] = f"http://127.0.0.1:{port}"
        env_file = s.etc / f"{name}.env"
        env_file.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
        env_file.chmod(0o600)


def test_the_production_path(site):
    s = site
    s.install()
    s.write_env_file()
    lines = check_userlist(s)  # before the hub ever ran: no secrets, no writes
    assert lines[0] == f"{s.etc}/userlist: OK, 2 users (1 admins)"
    assert "domain rules example.org dropped" in lines[1]
    assert list(s.state.iterdir()) == []
    setup_nginx(s)
    s.lap("install, userlist check, nginx with TLS")

    # -- the hub from its unit, the services started by the hub (the default)
    hub = start_hub(s, "hub.log", timeout=90)
    s.lap("hub start until it answers through nginx")
    # login over https; the provider's endpoints come from its discovery document
    client = login(s)
    auth = spawn(s, client)
    s.lap("login and spawn until ready")

    # -- a kernel over a websocket through nginx, in the chosen shared env
    resp = client.post(s.url(f"user/{s.user}/api/kernels"), json={}, headers=auth)
    assert resp.status_code == 201, resp.text
    assert resp.json()["name"] == "shared-python3"
    ws = s.url(f"user/{s.user}/api/kernels/{resp.json()['id']}/channels")
    ws = ws.replace("https:", "wss:", 1)
    token = auth["Authorization"].split()[1]
    code = "import os, sys; print(sys.prefix); print(os.getuid()); x = 41"
    out = execute_code(ws, token, code, ca_certs=str(s.cert))
    uid = pwd.getpwnam(s.user).pw_uid
    assert (out["error"], out["stdout"].split()) == (None, [str(s.envs / "python3"), str(uid)])
    # both services through nginx: the pages by browser login (no consent page), the API
    for name in ("idle-culler", "user-limit"):
        assert visit_service(s, client, name)["you"]["name"] == s.user
    assert client.get(s.url("services/user-limit/api/status"), headers=auth).status_code == 200
    s.lap("kernel over wss, both services")

    # -- the services as their own units; the restarted hub does not wait for them
    services_as_units(s)
    stop_main_process(hub)
    assert processes_of_uid(uid), "KillMode=process: users' servers outlive the hub"
    s.lap("hub stop")
    hub = start_hub(s, "hub2.log", timeout=30)
    s.lap("restart: hub answers through nginx, services not up yet")
    units = [
        started(s, unit_process(s.units / f"jupyterhub-{n}.service", s.logs / f"{n}.log"))
        for n in ("idle-culler", "user-limit")
    ]
    wait_services(s, units)
    s.lap("restart: both services' units answer through nginx")
    # the same kernel, still running, through the restored routes
    out = execute_code(ws, token, "print(x + 1)", ca_certs=str(s.cert))
    assert (out["error"], out["stdout"]) == (None, "42\n")
    fresh = login(s)
    for name in ("idle-culler", "user-limit"):
        assert visit_service(s, fresh, name)["you"]["name"] == s.user
    assert fresh.get(s.url("services/user-limit/api/status"), headers=auth).status_code == 200
    s.lap("same kernel, fresh login, both services")

    # -- upgrading: the hub stopped, upgrade-db from a root shell without the hub's secrets
    for p in units:
        p.stop()
    stop_main_process(hub)
    config = f"--config={s.etc / 'jupyterhub_config.py'}"
    upgrade = subprocess.run(
        ["jupyterhub", "upgrade-db", config],
        env=admin_env(s),
        cwd=s.state,
        capture_output=True,
        text=True,
    )
    assert upgrade.returncode == 0, upgrade.stderr[-2000:]
    s.lap("stop, upgrade-db")
    ARTIFACTS.mkdir(exist_ok=True)
    timings = {k: round(v, 1) for k, v in s.timings.items()}
    (ARTIFACTS / "production-path-timings.json").write_text(json.dumps(timings, indent=1))
