"""Running a service process in order: set up, serve, start background work, wait for a stop,
then stop taking requests, stop background work, close.

:func:`run_service` drives the public hooks of a
:class:`~jupyterhub_lab_ext.services.common.app.ServiceApp` (any object with the methods and
attributes of :class:`Runnable`); it keeps no state of its own.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from tornado.httpserver import HTTPServer

from jupyterhub_lab_ext.services.common.lifecycle import stop_on_signals
from jupyterhub_lab_ext.services.common.web import close_connections


class Runnable(Protocol):
    """What :func:`run_service` calls, in this order."""

    log: logging.Logger | logging.LoggerAdapter
    #: seconds ``on_stop`` may take before the shutdown goes on without it
    shutdown_timeout: float

    async def setup(self) -> None: ...

    def serve(self) -> HTTPServer | None: ...

    async def on_start(self) -> None: ...

    async def on_stop(self) -> None: ...

    async def teardown(self) -> None: ...


async def run_service(
    service: Runnable, stop: asyncio.Event, watcher: asyncio.Task | None = None
) -> None:
    """Run ``service`` until ``stop`` is set (SIGTERM and SIGINT set it); ``watcher`` (the
    hub watch, see :func:`~.lifecycle.watch_hub`) is cancelled at the end."""
    server = None
    with stop_on_signals(stop.set):
        try:
            await service.setup()
            server = service.serve()
            await service.on_start()
            await stop.wait()
            service.log.info("Shutting down")
        finally:
            if watcher is not None:
                watcher.cancel()
            await _shut_down(service, server)


async def _shut_down(service: Runnable, server: HTTPServer | None) -> None:
    if server is not None:
        server.stop()
    try:
        await asyncio.wait_for(service.on_stop(), service.shutdown_timeout)
    except asyncio.TimeoutError:
        service.log.warning("Background work did not stop within %ss", service.shutdown_timeout)
    if server is not None:
        await close_connections(server)
    await service.teardown()
