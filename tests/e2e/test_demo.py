"""The README's demo command: devtools/demo.py (what scripts/demo.sh runs after installing) starts a
working hub with the local provider, the sample userlist and the home template."""

import os
import pwd
import signal
import subprocess
import sys

from harness import REPO, child_env, free_port, oidc_login, wait_until


def test_demo_hub_logs_in_listed_users_and_refuses_the_others(tmp_path, user_prefix, home_root):
    port, provider_port = free_port(), free_port()
    log = open(tmp_path / "demo.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [
            sys.executable,
            str(REPO / "devtools" / "demo.py"),
            "--port",
            str(port),
            "--provider-port",
            str(provider_port),
            "--workdir",
            str(tmp_path / "demo"),
            "--home-root",
            str(home_root),
            "--username-prefix",
            user_prefix,
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=child_env(),
        start_new_session=True,
    )
    hub, provider = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{provider_port}"
    try:
        wait_until(
            lambda: b"Demo hub running" in (tmp_path / "demo.log").read_bytes(),
            timeout=120,
            what="demo hub",
        )
        client, resp = oidc_login(hub, provider, "alice", next_url="/hub/home")
        assert resp.status_code == 200, resp.text[:400]
        account = pwd.getpwnam(f"{user_prefix}alice")
        assert os.path.isfile(os.path.join(account.pw_dir, "welcome", "Welcome.ipynb"))
        me = client.get(f"{hub}/hub/api/user", headers={"Referer": f"{hub}/hub/home"}).json()
        assert me["admin"] is True

        for refused in ("carol", "mallory"):  # not listed / unverified email
            _, resp = oidc_login(hub, provider, refused)
            assert resp.status_code == 403, (
                refused,
                resp.status_code,
                str(resp.url),
                resp.text[:300],
            )
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(60)
        log.close()
