"""Shared pieces of the package's hub services: app base, auth, metrics, store, a fake hub.

The names below are loaded on first use, so a service without a REST API never imports
``jupyterhub.services.auth`` (and with it the hub's ORM).
"""

import importlib

_EXPORTS = {
    "ServiceApp": ".app",
    "JSONErrorMixin": ".auth",
    "OAuthCallbackHandler": ".auth",
    "ServiceHandler": ".auth",
    "HealthHandler": ".handlers",
    "MetricsHandler": ".handlers",
    "OpenAPIHandler": ".handlers",
    "HubAPIMetrics": ".metrics",
    "make_registry": ".metrics",
    "Store": ".store",
    "make_engine": ".store",
    "normalize_db_url": ".store",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
