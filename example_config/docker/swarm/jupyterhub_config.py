# jupyterhub_config.py for docker-stack.yml: the example hub on a multi-node Docker Swarm.
#
# Installed as /etc/jupyterhub/swarm/jupyterhub_config.py on the manager that runs the hub (the
# stack starts `jupyterhub --config=` this file). It loads the single-machine config
# (/etc/jupyterhub/jupyterhub_config.py: login, userlist, system users and homes, the two
# services, roles) and changes what a cluster needs:
#
# - users' servers are Swarm services (conda-kernel-swarm) on the host network of the node
#   they land on, as the user's numeric uid:gid, with the home and the shared envs mounted at
#   the same paths as on the hub; the hub and its proxy reach each server at its node's address;
# - the hub API listens on the manager's address (HUB_ADDRESS), which every node reaches;
# - the hub database is PostgreSQL (the stack's postgres service, on the manager's loopback);
# - memory and CPU limits and placement per group and per env.
#
# Secrets are Docker secrets (see docker-stack.yml and README.md); this file reads none of
# them while it loads: the cookie secret is read by the hub at start, the database password by
# libpq ($PGPASSFILE), the OAuth client secret from the environment.
#
# Environment variables, besides those of the single-machine config:
#   JUPYTERHUB_BASE_CONFIG  the single-machine config (default /etc/jupyterhub/jupyterhub_config.py)
#   HUB_ADDRESS             the manager's address on the nodes' network (required)
#   JHLE_SINGLEUSER_IMAGE   image of users' servers (Dockerfile.singleuser), pullable on every node
#   JUPYTERHUB_DB_URL       the hub database (default: the stack's PostgreSQL)
#   JUPYTERHUB_SECRETS_DIR  where the Docker secrets are mounted (default /run/secrets)

import os

c = get_config()  # noqa: F821 (provided by traitlets when JupyterHub loads this file)

load_subconfig(  # noqa: F821 (provided by traitlets)
    os.environ.get("JUPYTERHUB_BASE_CONFIG", "/etc/jupyterhub/jupyterhub_config.py")
)


def site(name: str, default: str = "") -> str:
    """A site value from the hub's environment (env_file of the stack)."""
    return os.environ.get(name, default)


HUB_ADDRESS = site("HUB_ADDRESS", "10.0.0.1")
IMAGE = site("JHLE_SINGLEUSER_IMAGE", "registry.example.org/jupyterhub-lab-ext-singleuser:latest")
SECRETS = site("JUPYTERHUB_SECRETS_DIR", "/run/secrets")

# ---------------------------------------------------------------------------------------------
# The hub on the manager. Servers on other nodes call the hub API (activity, OAuth) at
# HUB_ADDRESS; the proxy (started by the hub, on the manager too) connects to each server at
# the address of the node its task runs on, which the spawner looks up from the task.
# ---------------------------------------------------------------------------------------------
c.JupyterHub.hub_ip = HUB_ADDRESS
c.JupyterHub.hub_connect_ip = HUB_ADDRESS
# PostgreSQL: the hub's node can be replaced without moving a database file. The password is
# never in this file or on a command line: libpq reads it from $PGPASSFILE (a Docker secret).
c.JupyterHub.db_url = site(
    "JUPYTERHUB_DB_URL", "postgresql+psycopg://jupyterhub@127.0.0.1:5432/jupyterhub"
)
# the cookie secret from a Docker secret (mode 0400), the same on every redeploy
c.JupyterHub.cookie_secret_file = f"{SECRETS}/jupyterhub_cookie_secret"

# ---------------------------------------------------------------------------------------------
# Users' servers: Swarm services on any node that passes their placement.
# ---------------------------------------------------------------------------------------------
c.JupyterHub.spawner_class = "conda-kernel-swarm"
c.CondaKernelSwarmSpawner.image = IMAGE
# jupyterhub-singleuser of the image (the same path as on the hub, see Dockerfile.singleuser)
c.CondaKernelSwarmSpawner.cmd = ["/opt/jupyterhub-lab-ext/venv/bin/jupyterhub-singleuser"]
# The defaults keep what the single machine had: host networking with a free port per start,
# the user's numeric uid:gid from the hub's account database (so workers need no passwd
# entries), the home and each of shared_env_dirs (read-only) mounted at their own paths, and
# the service removed when the server stops. On several nodes the server must listen on an
# address the manager reaches: every request to it still needs the hub's login or a token;
# firewall the workers so that only the manager reaches their ephemeral ports.
c.CondaKernelSwarmSpawner.ip = "0.0.0.0"

# Memory and CPUs per server, by group (group:NAME in the userlist) and by env (its name on
# the spawn form). An env's entry wins; otherwise the most generous of the user's groups;
# otherwise "*". The spawn form shows each env's limits; a kernel killed for using more memory
# is explained in JupyterLab. Swarm refuses a task that no node can hold (cpu_limit above
# every node's cores), so keep the largest entry within your largest node.
c.CondaKernelContainerSpawner.resource_limits = {
    "*": {"mem_limit": "2G", "cpu_limit": 1.0, "mem_guarantee": "512M"},
    "group:physics-101": {"mem_limit": "4G", "cpu_limit": 2.0},
    "group:teachers": {"mem_limit": "8G", "cpu_limit": 4.0},
    "env:shared/gpu": {"mem_limit": "16G", "cpu_limit": 8.0, "cpu_guarantee": 2.0},
}
# Where servers may run, as Swarm constraints by the same keys; every matching entry applies.
# Label the nodes first: docker node update --label-add gpu=true gpu-node-1
c.CondaKernelSwarmSpawner.placement_constraints = {
    # no user server on the manager: it runs the hub, the proxy and the database
    "*": ["node.role == worker"],
    # the GPU env needs a GPU: only on the nodes labelled gpu=true
    "env:shared/gpu": ["node.labels.gpu == true"],
}

# The idle culler and the user limit work unchanged: they see every server through the hub
# API, whatever node it runs on, so the user limit's caps (max_active_servers, group_quotas
# in the single-machine config) count servers on all nodes: size them for the cluster.
