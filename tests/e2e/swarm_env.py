"""A multi-node Docker Swarm on this machine, for end-to-end tests and benchmarks.

Each node is a network namespace (``jh<token>-nK``) with one end of a veth pair; the other ends
hang on one Linux bridge in the host namespace, which has the subnet's ``.1`` (the hub binds its
API there); node K has ``.K+1``. The /24 is picked among ``10.230.0.0``-``10.239.255.0`` so that no
route of the machine overlaps it. In each namespace runs a private ``dockerd``
(:class:`docker_env.Dockerd`: own data root on a tmpfs, exec root, unix socket, pidfile, no bridge,
no iptables): unix sockets cross network namespaces, so the tests and the hub drive every engine
from the host. Node 1 is the manager (``swarm init`` on its address), the others join as workers;
the routing-mesh ``ingress`` network is removed; every node gets the label ``jhle.node=nK``.
Containers use host networking of their node, so a server on node K listens on node K's address.
The mount namespace is shared: a host directory (homes, shared envs) is the same path on every
node, which stands in for NFS here.

:meth:`MultiNodeSwarm.stop` always tears everything down: services removed, the swarm left, daemons
stopped by PID (their containerd and shims killed by PID), mounts removed, then the namespaces,
veths and the bridge deleted. If an engine cannot start, :meth:`start` raises with its log tail.
No traffic leaves these addresses and 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import ipaddress
import random
import secrets
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from docker_env import Dockerd, _log, _run, singleuser_image, singleuser_rootfs  # noqa: E402
from harness import wait_until  # noqa: E402

SUBNETS = [f"10.{a}.{b}.0/24" for a in range(230, 240) for b in range(256)]
SWARM_PORT = 2377


def _ip(*args: str, netns: str | None = None) -> None:
    argv = ["ip", *(["-n", netns] if netns else []), *args]
    _run(argv, timeout=30, what=" ".join(argv))


def free_subnet() -> ipaddress.IPv4Network:
    """A /24 from ``SUBNETS`` that overlaps none of this machine's addresses or routes."""
    out = subprocess.run(
        ["ip", "-4", "-o", "route", "show", "table", "all"], capture_output=True, text=True
    ).stdout
    out += subprocess.run(["ip", "-4", "-o", "addr"], capture_output=True, text=True).stdout
    used = []
    for word in out.split():
        with contextlib.suppress(ValueError):
            if "/" in word or word.count(".") == 3:
                used.append(ipaddress.ip_network(word, strict=False))
    candidates = [ipaddress.ip_network(s) for s in SUBNETS]
    random.shuffle(candidates)
    for net in candidates:
        if not any(net.overlaps(u) for u in used if u.prefixlen > 0):
            return net
    raise RuntimeError("no free /24 in 10.230-239.x.0")


class NodeDockerd(Dockerd):
    """A :class:`Dockerd` whose daemon runs in network namespace ``netns``."""

    def __init__(self, netns: str, **kwargs):
        super().__init__(**kwargs)
        self.netns = netns

    def argv(self) -> list[str]:
        # nsenter enters the network namespace only (`ip netns exec` would also make a mount
        # namespace with a fresh /sys, without the cgroup mounts dockerd needs) and execs the
        # daemon: the PID we hold is dockerd's own
        return ["nsenter", f"--net=/run/netns/{self.netns}", "--", *super().argv()]


class SwarmNode:
    """One node: its namespace, its veth link to the bridge, its address and its engine."""

    def __init__(self, prefix: str, index: int, address: str):
        self.index = index
        self.name = f"n{index}"
        self.netns = f"{prefix}-{self.name}"
        self.host_link = f"{prefix}h{index}"  # the veth end on the bridge (host namespace)
        self.address = address
        self.engine = NodeDockerd(self.netns)
        self.node_id: str | None = None

    def wire(self, bridge: str, prefixlen: int) -> None:
        _ip("netns", "add", self.netns)
        _ip(
            "link",
            "add",
            self.host_link,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            self.netns,
        )
        _ip("link", "set", self.host_link, "master", bridge, "up")
        _ip("link", "set", "lo", "up", netns=self.netns)
        _ip("addr", "add", f"{self.address}/{prefixlen}", "dev", "eth0", netns=self.netns)
        _ip("link", "set", "eth0", "up", netns=self.netns)

    def unwire(self) -> None:
        for argv in (["link", "del", self.host_link], ["netns", "del", self.netns]):
            subprocess.run(["ip", *argv], capture_output=True, check=False)

    def make_gwbridge(self) -> None:
        """Swarm's docker_gwbridge, made first so that its interface gets a name of our own."""
        self.engine.client.networks.create(
            "docker_gwbridge",
            driver="bridge",
            options={
                "com.docker.network.bridge.name": self.engine.gwbridge_name,
                "com.docker.network.bridge.enable_icc": "false",
                "com.docker.network.bridge.enable_ip_masquerade": "false",
            },
        )


class MultiNodeSwarm:
    """``nodes`` dockerd nodes in network namespaces, joined into one swarm; node 1 manages."""

    def __init__(self, nodes: int = 2):
        token = secrets.token_hex(2)
        self.prefix = f"jh{token}"
        self.bridge = f"{self.prefix}br"
        self.subnet = free_subnet()
        hosts = list(self.subnet.hosts())
        self.bridge_address = str(hosts[0])
        self.nodes = [SwarmNode(self.prefix, k, str(hosts[k])) for k in range(1, nodes + 1)]
        self.image: str | None = None
        self._bridge_made = False

    @property
    def manager(self) -> SwarmNode:
        return self.nodes[0]

    def env(self) -> dict[str, str]:
        """Environment for the hub: the manager's engine."""
        return self.manager.engine.env()

    def node(self, name: str) -> SwarmNode:
        return next(n for n in self.nodes if n.name == name)

    def node_of(self, node_id: str) -> SwarmNode:
        return next(n for n in self.nodes if n.node_id == node_id)

    # -- start
    def start(self) -> MultiNodeSwarm:
        started = time.monotonic()
        try:
            self._network()
            for node in self.nodes:
                node.engine.start()  # raises with the daemon's log tail
            self._swarm()
            self.image = self._images()
        except BaseException:
            self.stop()
            raise
        _log(
            f"swarm of {len(self.nodes)} nodes on {self.subnet} up"
            f" in {time.monotonic() - started:.0f} s"
        )
        return self

    def _network(self) -> None:
        _ip("link", "add", self.bridge, "type", "bridge")
        self._bridge_made = True
        _ip("addr", "add", f"{self.bridge_address}/{self.subnet.prefixlen}", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")
        for node in self.nodes:
            node.wire(self.bridge, self.subnet.prefixlen)

    def _swarm(self) -> None:
        manager = self.manager
        manager.make_gwbridge()
        client = manager.engine.client
        client.swarm.init(
            advertise_addr=manager.address, listen_addr=f"{manager.address}:{SWARM_PORT}"
        )
        token = client.swarm.attrs["JoinTokens"]["Worker"]
        for node in self.nodes[1:]:
            node.make_gwbridge()
            node.engine.client.swarm.join(
                remote_addrs=[f"{manager.address}:{SWARM_PORT}"],
                join_token=token,
                advertise_addr=node.address,
                listen_addr=f"{node.address}:{SWARM_PORT}",
            )
        for node in self.nodes:
            node.node_id = node.engine.client.info()["Swarm"]["NodeID"]

        def all_ready():
            states = {n.id: n.attrs["Status"]["State"] for n in client.nodes.list()}
            return len(states) == len(self.nodes) and set(states.values()) == {"ready"}

        wait_until(all_ready, timeout=60, what="every swarm node ready")
        for node in self.nodes:
            spec = client.nodes.get(node.node_id).attrs["Spec"]
            spec.setdefault("Labels", {})["jhle.node"] = node.name
            client.nodes.get(node.node_id).update(spec)
        wait_until(
            lambda: client.networks.list(names=["ingress"]), timeout=30, what="ingress network"
        )
        for net in client.networks.list(names=["ingress"]):
            net.remove()

    def _images(self) -> str:
        """The single-user image in every engine: one tarball (built once), the same tag."""
        rootfs = singleuser_rootfs()
        tags = {singleuser_image(node.engine, rootfs) for node in self.nodes}
        (tag,) = tags
        return tag

    def constraint(self, node: SwarmNode) -> str:
        """The placement constraint that pins a service to ``node``."""
        return f"node.labels.jhle.node=={node.name}"

    def running_tasks(self) -> list[dict]:
        api = self.manager.engine.client.api
        return [
            t
            for t in api.tasks(filters={"desired-state": "running"})
            if t["Status"]["State"] == "running"
        ]

    # -- stop
    def stop(self) -> None:
        started = time.monotonic()
        manager = self.manager.engine
        with contextlib.suppress(Exception):
            if manager.process is not None and manager.swarm_active():
                for service in manager.client.services.list():
                    service.remove()
                self._wait_task_containers_gone()
        for node in reversed(self.nodes):  # workers leave first
            engine = node.engine
            with contextlib.suppress(Exception):
                if engine.process is not None and engine.swarm_active():
                    engine.client.swarm.leave(force=True)
        for node in self.nodes:
            try:
                node.engine.stop()
            except Exception as exc:  # keep tearing the rest down
                _log(f"stopping the engine of {node.name} failed: {exc!r}")
        for node in self.nodes:
            node.unwire()
        if self._bridge_made:
            subprocess.run(["ip", "link", "del", self.bridge], capture_output=True, check=False)
            self._bridge_made = False
        _log(f"swarm torn down in {time.monotonic() - started:.1f} s")

    def _wait_task_containers_gone(self) -> None:
        def gone():
            label = {"label": "com.docker.swarm.service.id"}
            return all(
                not n.engine.client.containers.list(all=True, filters=label)
                for n in self.nodes
                if n.engine.process is not None
            )

        wait_until(gone, timeout=60, what="swarm task containers gone on every node")

    def leftovers(self) -> list[str]:
        """Namespaces and links of this swarm still present (empty after :meth:`stop`)."""
        netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
        return [w for w in (netns + links).split() if w.startswith(self.prefix)]


if __name__ == "__main__":  # a smoke run: python tests/e2e/swarm_env.py
    swarm = MultiNodeSwarm(2)
    try:
        swarm.start()
        api = swarm.manager.engine.client.api
        for n in api.nodes():
            print(n["ID"][:10], n["Status"].get("Addr"), n["Spec"].get("Labels"))
    finally:
        swarm.stop()
        print("leftovers:", swarm.leftovers())
