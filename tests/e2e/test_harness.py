"""The harness itself: a real hub with oauthenticator's LocalGenericOAuthenticator against the real
OIDC provider (the anchor setup our authenticator is compared with), a login creates the system user
and a real JupyterLab server runs as that user."""

import pwd

from harness import run_in_kernel, wait_until


def test_provider_login_spawns_real_lab_as_system_user(make_hub, oidc, user_prefix):
    name = f"{user_prefix}anchor"
    oidc.set_identity(name, email=f"{name}@example.org", email_verified=True)
    hub = make_hub(authenticator="generic-local")

    client, resp = hub.login(name)
    assert resp.status_code == 200, resp.text[:500]
    account = pwd.getpwnam(name)  # created by LocalAuthenticator on login

    hub.start_server(name)
    kernel = hub.server_api(name, "POST", "kernels", json={"name": "python3"})
    assert kernel.status_code == 201, kernel.text
    out = run_in_kernel(hub, name, kernel.json()["id"], "import os; print(os.getuid())")
    assert out["stdout"].strip() == str(account.pw_uid)

    hub.stop_server(name)
    wait_until(lambda: hub.user_model(name)["servers"] == {}, timeout=30, what="server gone")
