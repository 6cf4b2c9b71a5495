"""Shared pieces of the package's hub services: app base, auth, metrics, store, a fake hub."""

from .app import ServiceApp
from .auth import JSONErrorMixin, OAuthCallbackHandler, ServiceHandler
from .metrics import HubAPIMetrics, make_registry
from .store import Store, make_engine, normalize_db_url

__all__ = [
    "HubAPIMetrics",
    "JSONErrorMixin",
    "OAuthCallbackHandler",
    "ServiceApp",
    "ServiceHandler",
    "Store",
    "make_engine",
    "make_registry",
    "normalize_db_url",
]
