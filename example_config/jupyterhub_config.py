# jupyterhub_config.py: a complete single-machine jupyterhub-lab-ext hub.
#
# Layout assumed by this file (see docs/deployment.md):
#   /etc/jupyterhub/jupyterhub_config.py   this file (root:root 0644; no secrets in it)
#   /etc/jupyterhub/jupyterhub.env         secrets, read by systemd (root:root 0600)
#   /etc/jupyterhub/userlist               who may log in (root:root 0644; the hub rewrites it
#                                          when an admin adds or deletes users on the admin page)
#   /srv/jupyterhub/home-template/         notebooks copied into every new home
#   /opt/conda/envs/                       shared conda environments (root-owned, read-only to users)
#   /var/lib/jupyterhub/                   hub state: database, cookie secret, CHP pid file (0700)
#   /var/lib/jupyterhub-services/          the two services' state (owned by jupyterhub-services)
#   /var/lib/jupyterhub-lab-ext/           record of the system accounts the hub created
#
# The hub runs as root: it creates system users and homes and starts each user's server as
# that user. nginx terminates TLS in front of it and forwards https://hub.example.org/jupyter/
# to 127.0.0.1:8000 (example_config/nginx/jupyterhub.conf).
#
# Environment variables read here (all set in /etc/jupyterhub/jupyterhub.env):
#   OAUTH_PROVIDER        "oidc" (default), "github" or "google": which login block below applies
#   OAUTH_CLIENT_ID       client id registered at the provider
#   OAUTH_CLIENT_SECRET   client secret registered at the provider
#   OIDC_ISSUER           base URL of a generic OpenID Connect provider (only for "oidc")
#   JUPYTERHUB_PUBLIC_URL public URL of the hub, with the base URL, e.g. https://hub.example.org/jupyter/
#   JUPYTERHUB_STATE_DIR  hub state directory (default /var/lib/jupyterhub)

import os

c = get_config()  # noqa: F821 (provided by traitlets when JupyterHub loads this file)

PUBLIC_URL = os.environ.get("JUPYTERHUB_PUBLIC_URL", "https://hub.example.org/jupyter/")
PROVIDER = os.environ.get("OAUTH_PROVIDER", "oidc")
VENV = "/opt/jupyterhub-lab-ext/venv"
# hub state; override for a test copy of this file
STATE = os.environ.get("JUPYTERHUB_STATE_DIR", "/var/lib/jupyterhub")

# ---------------------------------------------------------------------------------------------
# Network: only nginx talks to the proxy; the hub API and the services listen on loopback.
# ---------------------------------------------------------------------------------------------
c.JupyterHub.ip = "127.0.0.1"
c.JupyterHub.port = 8000
# Everything (hub, users' servers, services) lives under /jupyter/. nginx forwards the path
# unchanged (proxy_pass without a URI part), so no rewriting happens anywhere.
c.JupyterHub.base_url = "/jupyter/"
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = 8081
# The hub starts configurable-http-proxy itself (found on PATH, see the systemd unit); its
# REST API stays on loopback. CONFIGPROXY_AUTH_TOKEN is generated when unset.
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:8001"
c.ConfigurableHTTPProxy.pid_file = f"{STATE}/jupyterhub-proxy.pid"
# the hub is behind nginx: trust X-Forwarded-* from it only
c.JupyterHub.trusted_downstream_ips = ["127.0.0.1"]

# ---------------------------------------------------------------------------------------------
# State. SQLite is fine for one machine; see docs/deployment.md for PostgreSQL.
# ---------------------------------------------------------------------------------------------
c.JupyterHub.db_url = f"sqlite:///{STATE}/jupyterhub.sqlite"
c.JupyterHub.cookie_secret_file = f"{STATE}/jupyterhub_cookie_secret"
# Keep users' servers running when the hub restarts (upgrades, config changes): the hub
# finds them again from its database. Set True to stop every server when the hub stops.
c.JupyterHub.cleanup_servers = False
# Activity from the proxy every minute (the default is 5 min): the idle culler's idle times
# are at most this much too short.
c.JupyterHub.last_activity_interval = 60

# ---------------------------------------------------------------------------------------------
# Login: OAuth2/OpenID Connect, restricted by the userlist file.
# ---------------------------------------------------------------------------------------------
# Settings shared by the three authenticator classes go on the mixin (traitlets applies a
# section to every class that inherits from it) and on oauthenticator's base class.
c.OAuthenticator.client_id = os.environ.get("OAUTH_CLIENT_ID", "")
c.OAuthenticator.client_secret = os.environ.get("OAUTH_CLIENT_SECRET", "")
# Register exactly this URL as the redirect/callback URL at the provider.
c.OAuthenticator.oauth_callback_url = PUBLIC_URL.rstrip("/") + "/hub/oauth_callback"

if PROVIDER == "oidc":
    # Any OpenID Connect provider (Keycloak, Authentik, Dex, Azure AD, ...). Take the three
    # URLs from $OIDC_ISSUER/.well-known/openid-configuration; the paths below are Keycloak's.
    issuer = os.environ.get("OIDC_ISSUER", "https://idp.example.org/realms/lab").rstrip("/")
    c.JupyterHub.authenticator_class = "userlist"
    c.UserlistOAuthenticator.authorize_url = f"{issuer}/protocol/openid-connect/auth"
    c.UserlistOAuthenticator.token_url = f"{issuer}/protocol/openid-connect/token"
    c.UserlistOAuthenticator.userdata_url = f"{issuer}/protocol/openid-connect/userinfo"
    c.UserlistOAuthenticator.scope = ["openid", "profile", "email"]
    # The claim matched against the userlist: "email" for a list of addresses,
    # "preferred_username" for a list of logins.
    c.UserlistOAuthenticator.username_claim = "email"
    c.UserlistOAuthenticator.login_service = "Example University login"
elif PROVIDER == "github":
    # https://github.com/settings/developers -> OAuth Apps. The userlist holds GitHub logins.
    c.JupyterHub.authenticator_class = "userlist-github"
elif PROVIDER == "google":
    # Google Cloud console -> APIs & Services -> Credentials -> OAuth client ID (web app).
    # The userlist holds email addresses.
    c.JupyterHub.authenticator_class = "userlist-google"
    # Optional: only offer accounts of your Google Workspace domain on Google's login page.
    # c.UserlistGoogleOAuthenticator.hosted_domain = ["example.org"]
else:
    raise ValueError(f"OAUTH_PROVIDER must be oidc, github or google, not {PROVIDER!r}")

# Who may log in, who is admin, which hub groups (IDENTITY [admin] [group:NAME ...]).
# Re-read on change; check an edit with: jupyterhub-lab-ext userlist check /etc/jupyterhub/userlist
c.UserlistAuthenticatorMixin.userlist_file = "/etc/jupyterhub/userlist"
# Refuse emails the provider has not verified (the default; keep it with an email userlist).
c.UserlistAuthenticatorMixin.require_verified_email = True
# Your own domain is dropped from system usernames (alice@example.org -> alice); other
# domains stay encoded (bob@gmail.com -> bob-gmail-com), so they never share an account.
c.UserlistAuthenticatorMixin.domain_rules = {"example.org": ""}
# What a removed line does: "revoke" (login refused), "stop" (also stop servers),
# "lock" (also lock the system account). Homes are never deleted.
c.UserlistAuthenticatorMixin.on_removal = "stop"

# ---------------------------------------------------------------------------------------------
# System users and homes (created asynchronously at first login).
# ---------------------------------------------------------------------------------------------
c.UserlistAuthenticatorMixin.create_system_users = True
# e.g. an NFS mount; homes are <home_root>/<username>
c.UserlistAuthenticatorMixin.home_root = "/home"
c.UserlistAuthenticatorMixin.home_mode = 0o700
# copied into each new home; push later additions with: jupyterhub-lab-ext homes sync-template
c.UserlistAuthenticatorMixin.home_template = "/srv/jupyterhub/home-template"
# one group for all hub users makes file sharing and quotas easier
c.UserlistAuthenticatorMixin.system_group = "jupyterusers"
# where the hub records which accounts it created (it never touches other accounts)
c.UserlistAuthenticatorMixin.system_users_state_dir = "/var/lib/jupyterhub-lab-ext"

# ---------------------------------------------------------------------------------------------
# Spawner: each user picks a shared or a personal conda environment on the spawn form.
# ---------------------------------------------------------------------------------------------
c.JupyterHub.spawner_class = "conda-kernel"
# Set on the mixin, these apply to conda-kernel and to conda-kernel-docker/-swarm alike
# (docker/jupyterhub_docker_config.py reuses this file).
# shared envs, offered as shared/<name>; root-owned, mode 755
c.CondaKernelSpawnerMixin.shared_env_dirs = ["/opt/conda/envs"]
# users' own envs, offered as mine/<name> (the first entry is where `conda create -n` puts them)
c.CondaKernelSpawnerMixin.user_env_dirs = ["~/.conda/envs"]
c.CondaKernelSpawnerMixin.default_env = "shared/python3"
# The single-user server runs from the hub's venv (world-readable); kernels run in the envs.
c.Spawner.cmd = [f"{VENV}/bin/jupyterhub-singleuser"]
c.Spawner.default_url = "/lab"
c.Spawner.notebook_dir = "~"
# first starts on a busy machine or NFS can be slow
c.Spawner.start_timeout = 120
c.Spawner.http_timeout = 60

# ---------------------------------------------------------------------------------------------
# Services: the idle culler and the user limit, both managed by the hub (started, restarted
# and given an API token by the hub). Their REST APIs are under /jupyter/services/<name>/.
# ---------------------------------------------------------------------------------------------
# the services' own state, apart from the hub's: /var/lib/jupyterhub stays root-only (0700)
SERVICE_STATE = f"{STATE}-services"

c.JupyterHub.services = [
    {
        "name": "idle-culler",
        "url": "http://127.0.0.1:10101",
        "command": [
            f"{VENV}/bin/jupyterhub-lab-idle-culler",
            "--timeout=3600",  # stop servers idle for an hour
            "--cull-every=300",
            "--concurrency=10",
            "--pending-timeout=900",  # stop spawns stuck for 15 min
            f"--db-url=sqlite:///{SERVICE_STATE}/idle-culler.sqlite",  # exemptions
            # also delete inactive hub users (add read:users and delete:users below):
            # "--cull-users=True",
            # keep servers whose kernels are busy (add access:servers below); servers are
            # asked through the proxy:
            # "--kernel-aware=True",
            # "--LabIdleCuller.server_base_url=http://127.0.0.1:8000",
        ],
        # An unprivileged account (create it first, docs/deployment.md) instead of root.
        "user": "jupyterhub-services",
        "cwd": SERVICE_STATE,
        "display": False,
    },
]

# Admin scopes of the services' REST APIs (passes and exemptions of the culler; runtime limits
# of the user limit). Hub admins always pass; grant them to others with a role, as below.
c.JupyterHub.custom_scopes = {
    "custom:idle-culler:admin": {
        "description": "Run culling passes now and set or remove culling exemptions.",
    },
    "custom:user-limit:admin": {
        "description": "Change the user-limit service's limits at runtime.",
    },
}

c.JupyterHub.load_roles = [
    {
        "name": "idle-culler-service",
        "description": "Find idle servers and stop them.",
        "scopes": [
            "list:users",
            "read:users:activity",
            "read:users:groups",  # per-group timeouts and exemptions
            "read:servers",
            "delete:servers",
            # only with --cull-users (read:users shows when never-active users were created):
            # "read:users", "delete:users",
            # "access:servers",  # only with --kernel-aware
        ],
        "services": ["idle-culler"],
    },
    {
        # people who run the lab without being hub admins: members of the hub group
        # "teachers" (group:teachers in the userlist)
        "name": "lab-operators",
        "description": "Read and manage the idle culler and the user limit.",
        "scopes": [
            "access:services!service=idle-culler",
            "access:services!service=user-limit",
            "custom:idle-culler:admin",
            "custom:user-limit:admin",
        ],
        "groups": ["teachers"],
    },
]

# The user limit: caps, seats, group quotas and a waiting queue. This one call adds the managed
# service "user-limit" to c.JupyterHub.services, its least-privilege role "user-limit-service"
# (list:users, read:users:name, read:users:groups, read:servers, start:servers), read access
# to the service for every user (the queue page), and the hub-side hooks that ask the service
# before every spawn (Spawner.pre_spawn_hook/post_stop_hook) and login (post_auth_hook).
# Call it after the settings above: it extends services, roles and custom_scopes.
from jupyterhub_lab_ext.services.user_limit.hook import enable_user_limit  # noqa: E402

enable_user_limit(
    c,
    url="http://127.0.0.1:10102",
    # shared secret of hook and service, created 0600 on the first start
    hook_token_file=f"{STATE}/user-limit-hook-token",
    db_url=f"sqlite:///{SERVICE_STATE}/user-limit.sqlite",
    # when the service is down: refuse spawns with a clear message (False) or let them through
    fail_open=False,
    max_active_servers=40,  # servers running at once on this machine
    max_users=200,  # seats: distinct users who may log in
    group_quotas={"physics-101": 30},  # servers per hub group at once
    max_servers_per_user=2,
    # the same unprivileged account as the culler (managed services only)
    service_options={"user": "jupyterhub-services", "cwd": SERVICE_STATE},
)
