"""One async client for the JupyterHub REST API, shared by the package's hub services.

:class:`HubAPI` is the transport of :mod:`.hubhttp` (its own HTTP client, bounded concurrency,
retries, a metrics hook, no token in any log) plus the resources the services use: paginated
listings (prefetching the next page while the caller works on the current one; the two reading
orders are in :mod:`.pagination`), users, groups, servers, and the owner of a token (cached, see
:mod:`.tokens`).

Example::

    hub = HubAPI(concurrency=20)          # url/token from JUPYTERHUB_API_URL/JUPYTERHUB_API_TOKEN
    async for user in hub.iter_users(state="ready"):
        ...
    status = await hub.stop_server("alice")   # 204 stopped, 202 still stopping
    await hub.aclose()
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from urllib.parse import quote

from jupyterhub_lab_ext.services.common.hubhttp import HubAPIError, HubHTTP, endpoint_label
from jupyterhub_lab_ext.services.common.pagination import (
    PAGINATION_MEDIA_TYPE,
    ListingError,
    Page,
    Prefetch,
    read_forward,
    read_last_page_first,
    unpack,
)
from jupyterhub_lab_ext.services.common.tokens import TokenOwners

__all__ = ["HubAPI", "HubAPIError", "endpoint_label"]


class HubAPI(HubHTTP):
    """Async client for the Hub REST API.

    Takes :class:`~.hubhttp.HubHTTP`'s arguments (``url``, ``token``, ``concurrency``,
    ``request_timeout``, ``connect_timeout``, ``retries``, ``backoff_base``, ``backoff_max``,
    ``ssl_options``, ``on_call``) and:

    :param page_size: default ``limit`` for paginated listings (0: the hub's default).
    :param token_cache_ttl: seconds :meth:`token_owner` remembers a valid token's answer: the
        longest a revoked token or a demoted owner can still be taken for what it was.
    :param negative_cache_ttl: seconds an invalid token's answer is remembered (a refusal only).
    """

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        page_size: int = 0,
        token_cache_ttl: float = 5.0,
        negative_cache_ttl: float = 10.0,
        **transport,
    ):
        super().__init__(url, token, **transport)
        self.page_size = page_size
        self._owners = TokenOwners(
            self._ask_token_owner, ttl=token_cache_ttl, negative_ttl=negative_cache_ttl
        )

    # -- pagination ------------------------------------------------------------------------
    async def paginate(
        self,
        path: str,
        params: dict | None = None,
        page_size: int | None = None,
        *,
        removal_safe: bool = False,
    ) -> AsyncIterator[dict]:
        """Yield every item of a paginated listing, prefetching the next page.

        Uses ``offset``/``limit`` from ``_pagination`` against our own API URL (a hub behind a
        proxy with another public URL still works). A hub that answers with a bare list (no
        pagination support) is yielded as is.

        ``removal_safe``: the caller removes items from the listing while iterating (stopping
        servers of a ``state=ready`` listing); the pages are then read from the last one down
        and the first page's items are yielded last (see :mod:`.pagination`).
        """
        params = dict(params or {})
        size = self.page_size if page_size is None else page_size
        if size:
            params["limit"] = size
        pages = Prefetch(self._page_reader(path, params))
        try:
            pages.start(0)
            items, pagination = await pages.take()
            if pagination is None or not pagination.get("next"):
                for item in items:
                    yield item
                return
            limit = int(pagination.get("limit") or size or len(items) or 1)
            read = read_last_page_first if removal_safe else read_forward
            async with contextlib.aclosing(read(pages, items, pagination, limit)) as rest:
                async for item in rest:
                    yield item
        finally:
            await pages.cancel()

    def _page_reader(self, path: str, params: dict):
        """``fetch(offset, limit)`` of one page of ``path`` (see :mod:`.pagination`)."""
        headers = {"Accept": PAGINATION_MEDIA_TYPE}

        async def fetch(offset: int, limit: int | None) -> Page:
            p = dict(params)
            if offset:
                p["offset"] = offset
            if limit:
                p["limit"] = limit
            _, body = await self.request("GET", path, params=p, headers=headers, ok=(200,))
            try:
                return unpack(body)
            except ListingError as e:
                raise HubAPIError("GET", endpoint_label(path), 200, str(e)) from None

        return fetch

    def iter_users(
        self,
        state: str | None = None,
        page_size: int | None = None,
        include_stopped_servers: bool = False,
        *,
        removal_safe: bool = False,
        **params,
    ) -> AsyncIterator[dict]:
        """Page through ``GET /users`` (``state``: ``active``, ``ready``, ``inactive`` or None).

        See :meth:`paginate` for ``removal_safe``.
        """
        if state:
            params["state"] = state
        if include_stopped_servers:
            params["include_stopped_servers"] = True
        return self.paginate("/users", params, page_size, removal_safe=removal_safe)

    def iter_groups(self, page_size: int | None = None) -> AsyncIterator[dict]:
        """Page through ``GET /groups``."""
        return self.paginate("/groups", None, page_size)

    # -- resources -------------------------------------------------------------------------
    async def get_version(self) -> str:
        """The hub's version from the unauthenticated ``GET /`` (no ``read:hub`` needed)."""
        _, body = await self.request("GET", "/", ok=(200,))
        return (body or {}).get("version", "") if isinstance(body, dict) else ""

    async def get_user(self, name: str) -> dict | None:
        """The user model, or None if the hub has no such user."""
        status, body = await self.request("GET", f"/users/{quote(name, safe='')}", ok=(200, 404))
        return body if status == 200 else None

    async def get_group(self, name: str) -> dict | None:
        status, body = await self.request("GET", f"/groups/{quote(name, safe='')}", ok=(200, 404))
        return body if status == 200 else None

    async def stop_server(self, user: str, server_name: str = "", remove: bool = False) -> int:
        """Stop (and with ``remove`` delete) a server: 204 stopped, 202 still stopping."""
        u = quote(user, safe="")
        if server_name:
            path = f"/users/{u}/servers/{quote(server_name, safe='')}"
            body = {"remove": True} if remove else None
        else:
            path = f"/users/{u}/server"
            body = None
        status, _ = await self.request("DELETE", path, json=body, ok=(202, 204))
        return status

    async def delete_user(self, name: str) -> int:
        status, _ = await self.request("DELETE", f"/users/{quote(name, safe='')}", ok=(204,))
        return status

    async def token_owner(self, token: str, *, fresh: bool = False) -> dict | None:
        """The user or service model owning ``token`` (with the token's ``scopes``), or None.

        Answers are cached for ``token_cache_ttl`` seconds (invalid tokens for
        ``negative_cache_ttl``), keyed by a SHA-256 of the token; concurrent lookups of the
        same token share one hub request. ``fresh=True`` skips the cache (its answer is cached
        for the next callers): use it before any change. Hub errors raise :class:`HubAPIError`
        and are not cached.
        """
        return await self._owners.owner(token, fresh=fresh)

    async def _ask_token_owner(self, token: str) -> dict | None:
        status, body = await self.request("GET", "/user", token=token, ok=(200, 401, 403))
        return body if status == 200 and isinstance(body, dict) else None

    def forget_tokens(self):
        """Drop the token cache (e.g. after a role change in tests)."""
        self._owners.clear()
