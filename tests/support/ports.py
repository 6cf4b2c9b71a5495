"""The one ``free_port`` of the tests and benchmarks."""

from __future__ import annotations

import random
import socket

# Below the kernel's ephemeral range (net.ipv4.ip_local_port_range, 32768-60999 by default): a port
# from bind(0) comes from that range, where any outgoing connection on the machine (hub -> proxy,
# proxy -> server, ...) may take it as its source port before the caller binds it. We saw exactly
# that race (EADDRINUSE from the proxy) with several suites running at once. Ports drawn at random
# below the range are only ever taken by another listener, which the bind check below sees.
_LOW, _HIGH = 20000, 32000


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now.

    Drawn at random outside the kernel's ephemeral range (see above), checked by binding it, then
    released: another listener may still take it before the caller binds, so every caller binds at
    once. Falls back to a kernel-chosen port after 50 busy draws.
    """
    rng = random.SystemRandom()
    for _ in range(50):
        port = rng.randint(_LOW, _HIGH)
        if _bindable(port):
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
