"""A JupyterHub spawner that runs nothing, for tests and benchmarks of hub services on a real hub.

``FakeSpawner`` "starts" at once, pointing the server at the hub's own address (which answers
the hub's readiness check), and "stops" after ``stop_seconds`` (50 ms by default): the hub's own
work per start and stop is real, the single-user server is not. Load it from a hub config::

    import sys
    sys.path.insert(0, "/path/to/tests/support")
    from fakespawner import FakeSpawner
    c.JupyterHub.spawner_class = FakeSpawner
    c.FakeSpawner.stop_seconds = 0.05
"""

from __future__ import annotations

import asyncio

from jupyterhub.spawner import Spawner
from traitlets import Float


class FakeSpawner(Spawner):
    stop_seconds = Float(0.05, help="Seconds a stop takes.").tag(config=True)

    _running = False

    async def start(self):
        self._running = True
        # the hub itself answers at its own address: a server "ready" at once
        return (self.hub.ip or "127.0.0.1", self.hub.port)

    async def stop(self, now=False):
        await asyncio.sleep(self.stop_seconds)
        self._running = False

    async def poll(self):
        return None if self._running else 0
