# jupyterhub_docker_config.py: the example hub with users' servers in Docker containers
# (docker-compose.yml, one machine) or in Docker Swarm services (stack.yml, several machines).
#
# It loads the single-machine config (example_config/jupyterhub_config.py: login, userlist,
# system users and homes, the two services, roles) and changes only where servers run:
#
# - host networking everywhere: the hub, its proxy and the services listen on the host's
#   loopback (nginx on the host forwards to 127.0.0.1:8000, as without Docker); each server
#   container binds its own random port, on 127.0.0.1 (Docker) or on the node (Swarm);
# - a server runs with the numeric uid:gid of the user's system account (created by the hub at
#   first login) and sees the user's home at the same path as the hub does. On several machines
#   the homes come from NFS mounted at the same path on every node; since only the hub
#   allocates uids and containers run with numbers, uids agree everywhere;
# - the shared conda envs are mounted read-only at the same path as on the hub (conda prefixes
#   are not relocatable): conda-kernel-docker/-swarm do that by default for shared_env_dirs.
#
# Environment variables (besides those of jupyterhub_config.py):
#   JUPYTERHUB_BASE_CONFIG  path of the single-machine config (default: next to this file)
#   JHLE_DOCKER_MODE        "docker" (default, one machine) or "swarm"
#   JHLE_SINGLEUSER_IMAGE   image of users' servers (Dockerfile.singleuser)
#   HUB_ADDRESS             swarm only: this manager node's address, reachable from the workers

import os

from jupyterhub_lab_ext.spawner.docker import CondaKernelSwarmSpawner

c = get_config()  # noqa: F821

here = os.path.dirname(os.path.abspath(__file__))
load_subconfig(  # noqa: F821 (provided by traitlets)
    os.environ.get("JUPYTERHUB_BASE_CONFIG", os.path.join(here, "jupyterhub_config.py"))
)

MODE = os.environ.get("JHLE_DOCKER_MODE", "docker")
IMAGE = os.environ.get("JHLE_SINGLEUSER_IMAGE", "jupyterhub-lab-ext-singleuser:latest")


class NodeAddressSwarmSpawner(CondaKernelSwarmSpawner):
    """conda-kernel-swarm on several machines: the server listens on the node its task landed on
    (the module's defaults already run it on the host network as the user's uid:gid, with the
    home and the shared envs at the same path)."""

    async def get_ip_and_port(self):
        task = await self.get_task()
        node = await self.docker("inspect_node", task["NodeID"])
        return node["Status"]["Addr"], self.port


if MODE == "swarm":
    c.JupyterHub.spawner_class = NodeAddressSwarmSpawner
    hub_address = os.environ.get("HUB_ADDRESS", "10.0.0.1")
    # workers reach the hub API on the manager's address; the proxy reaches servers on theirs
    c.JupyterHub.hub_ip = hub_address
    c.JupyterHub.hub_connect_ip = hub_address
    # servers bind all interfaces of their node: let only the manager reach the workers'
    # ephemeral ports (firewall); every request to a server still needs hub auth
    c.DockerSpawner.ip = "0.0.0.0"
else:
    c.JupyterHub.spawner_class = "conda-kernel-docker"
    c.DockerSpawner.ip = "127.0.0.1"
    # stopped containers go away: everything worth keeping lives in the home (Swarm services
    # are always removed)
    c.DockerSpawner.remove = True

# The conda-kernel settings (c.CondaKernelSpawner.*) of the single-machine config apply
# here too. The container spawners mount each of shared_env_dirs read-only at its own path
# (the default of read_only_volumes), so kernels find their envs where the hub saw them.

c.DockerSpawner.image = IMAGE
c.DockerSpawner.network_name = "host"
# no published ports (Docker refuses port bindings on the host network); the spawners above
# report where the server listens themselves (host network: the port they picked)
c.DockerSpawner.use_internal_ip = True
# jupyterhub-singleuser of the image (same path as on the host, see Dockerfile.singleuser);
# this section is more specific than the c.Spawner.cmd of the single-machine config
c.DockerSpawner.cmd = ["/opt/jupyterhub-lab-ext/venv/bin/jupyterhub-singleuser"]
# per server; Swarm rejects a task whose cpu_limit exceeds the cores of every node
c.DockerSpawner.mem_limit = "8G"
c.DockerSpawner.cpu_limit = 4.0
