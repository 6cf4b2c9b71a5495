"""The JupyterLab status extension's server side: a jupyter_server extension in each user's server.

The conda-kernel spawners enable it (``--ServerApp.jpserver_extensions``, see
``CondaKernelSpawner.lab_status``); the prebuilt JupyterLab extension shipped under
``share/jupyter/labextensions/jupyterhub-lab-ext`` talks to it. It reports the environment the
server was started with and what the idle culler and the user-limit service know about this
server's user, fetched server-side with the server's own ``$JUPYTERHUB_API_TOKEN``, and sends
"Keep my server" to the hub as activity. See ``docs/lab-status.md``.

Loaded inside every single-user server: imports only ``util``, the standard library, tornado and
jupyter_server, never jupyterhub (the server's env need not have it) and no other folder.
"""

from __future__ import annotations

from jupyter_server.utils import url_path_join

from jupyterhub_lab_ext.labserver.handlers import KeepHandler, LabStatus, StatusHandler
from jupyterhub_lab_ext.util import lab_status as names


def _jupyter_server_extension_points():
    return [{"module": names.SERVER_EXTENSION}]


def _load_jupyter_server_extension(serverapp):
    web_app = serverapp.web_app
    state = LabStatus.from_environ()
    web_app.settings[names.SETTINGS_KEY] = state
    base = url_path_join(web_app.settings["base_url"], names.URL_PATH)
    web_app.add_handlers(
        ".*$",
        [
            (url_path_join(base, "status"), StatusHandler),
            (url_path_join(base, "keep"), KeepHandler),
        ],
    )
    serverapp.log.info(
        "jupyterhub-lab-ext status: env=%s culler=%s user-limit=%s refresh=%ss",
        state.env,
        "yes" if state.culler.url else "no",
        "yes" if state.limits.url else "no",
        state.refresh,
    )
