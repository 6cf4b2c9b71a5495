"""Names shared by the hub-side spawner and the JupyterLab status extension in the user's server.

The spawner (hub process) puts these variables in the single-user server's environment; the
server extension (:mod:`jupyterhub_lab_ext.labserver`) reads them. One definition, two processes.
"""

from __future__ import annotations

#: the environment the server was started with, as the spawn form names it (``shared/data``)
ENV_NAME = "JUPYTERHUB_LAB_EXT_ENV"
#: base URL of the idle culler's REST API (``http://127.0.0.1:10101/services/idle-culler/``)
ENV_CULLER_URL = "JUPYTERHUB_LAB_EXT_CULLER_URL"
#: base URL of the user-limit service's REST API
ENV_USER_LIMIT_URL = "JUPYTERHUB_LAB_EXT_USER_LIMIT_URL"

#: seconds between the status item's refreshes (and the cache time of the services' answers)
ENV_REFRESH = "JUPYTERHUB_LAB_EXT_REFRESH"

#: the server extension's module (``jpserver_extensions`` key) and its URL path under base_url
SERVER_EXTENSION = "jupyterhub_lab_ext.labserver"
URL_PATH = "jupyterhub-lab-ext"
#: the prebuilt JupyterLab extension's name (``share/jupyter/labextensions/<name>``)
LABEXTENSION_NAME = "jupyterhub-lab-ext"
#: where the server extension keeps its state in the server's tornado settings
SETTINGS_KEY = "jupyterhub_lab_ext_status"
