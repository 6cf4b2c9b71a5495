"""First login to running server: our userlist authenticator vs oauthenticator's
LocalGenericOAuthenticator (create_system_users), on the same machine in the same run.

Both hubs run at once against the same real OIDC provider; users alternate between them so that
machine noise hits both alike. Each sample is: OIDC login (login + consent forms) -> the hub creates
the system user (ours also copies the home template and reads the userlist) -> /hub/spawn -> the real
JupyterLab server is ready. Target: ours <= 1.10x the anchor.

    python bench/bench_login.py [--users 6]
"""

from __future__ import annotations

import argparse
import secrets
import shutil
import tempfile
import time
from pathlib import Path

from _common import report, summary, use_harness

use_harness()
from harness import Hub, OIDCProvider, remove_test_users  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def one_login(hub: Hub, name: str) -> float:
    t0 = time.perf_counter()
    client, resp = hub.login(name, next_url="/hub/spawn")
    client.close()
    if resp.status_code >= 400:
        raise RuntimeError(f"login of {name} failed: {resp.status_code}\n{hub.log_tail()}")
    hub.wait_ready(name, timeout=120)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=6, help="first logins per variant")
    args = parser.parse_args()
    prefix = f"jb{secrets.token_hex(2)}-"
    work = Path(tempfile.mkdtemp(prefix="jhle-bench-login-"))
    homes = Path(tempfile.mkdtemp(prefix="jhle-bench-homes-"))
    homes.chmod(0o755)
    provider = OIDCProvider(work).start()
    names = {v: [f"{prefix}{v[0]}{i}" for i in range(args.users)] for v in ("anchor", "ours")}
    for name in names["anchor"] + names["ours"]:
        provider.set_identity(name, email=f"{name}@example.org", email_verified=True)
    hubs = {
        "anchor": Hub(
            work / "anchor", provider=provider, authenticator="generic-local", home_root=homes
        ),
        "ours": Hub(
            work / "ours",
            provider=provider,
            authenticator="userlist",
            home_root=homes,
            userlist="".join(f"{n}\n" for n in names["ours"]),
            config=f"c.UserlistOAuthenticator.home_template = "
            f"{str(REPO / 'example_config' / 'home-template')!r}\n",
        ),
    }
    times: dict[str, list[float]] = {"anchor": [], "ours": []}
    try:
        for hub in hubs.values():
            hub.start()
        for i in range(args.users):
            order = ("anchor", "ours") if i % 2 == 0 else ("ours", "anchor")
            for variant in order:
                times[variant].append(one_login(hubs[variant], names[variant][i]))
    finally:
        for hub in hubs.values():
            hub.stop()
        provider.stop()
        remove_test_users(prefix, [homes])
        shutil.rmtree(homes, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)

    a, o = summary(times["anchor"]), summary(times["ours"])
    ratio = o["median"] / a["median"]
    report(
        "login",
        "First login to running JupyterLab (seconds, real OIDC provider, real system users)",
        ["variant", "n", "median", "p90", "min", "max"],
        [
            [
                "LocalGenericOAuthenticator (anchor)",
                a["n"],
                a["median"],
                a["p90"],
                a["min"],
                a["max"],
            ],
            [
                "UserlistOAuthenticator (ours, + template copy)",
                o["n"],
                o["median"],
                o["p90"],
                o["min"],
                o["max"],
            ],
            ["ratio ours/anchor (median)", "", ratio, "", "", ""],
        ],
        {"anchor": times["anchor"], "ours": times["ours"], "ratio_median": ratio},
    )


if __name__ == "__main__":
    main()
