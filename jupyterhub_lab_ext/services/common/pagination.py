"""Reading a paginated Hub API listing (``offset``/``limit``, JupyterHub >= 2), in two orders.

- :func:`read_forward` follows each page's ``_pagination.next``: the hub's own order.
- :func:`read_last_page_first` reads the pages from the last one down and the first page last,
  for a caller that removes items from the listing while it reads (stopping servers of a
  ``state=ready`` listing). With offsets read forward, every removal shifts later items into
  pages already read, and they are skipped; read backward, a removal only shifts items that
  were read already.

Both keep the next page's request in flight while the caller works on the current page
(:class:`Prefetch`), and both are bounded in pages (:data:`MAX_PAGES`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

#: ``Accept`` type that makes the hub answer a listing with ``items`` and ``_pagination``
PAGINATION_MEDIA_TYPE = "application/jupyterhub-pagination+json"
#: pages read at most from one listing
MAX_PAGES = 1_000_000

#: a page: its items and its ``_pagination`` (None: the hub answered a bare list)
Page = tuple[list, dict | None]
#: ``fetch(offset, limit)``: one page of the listing (``limit`` None: the caller's default)
Fetch = Callable[[int, int | None], Awaitable[Page]]


class ListingError(ValueError):
    """A listing answer that is neither a list nor ``{"items": [...], ...}``."""


def unpack(body: object) -> Page:
    """``(items, _pagination)`` of a listing answer; ``_pagination`` None for a bare list."""
    if isinstance(body, list):
        return body, None
    if not isinstance(body, dict) or not isinstance(body.get("items", []), list):
        raise ListingError("unexpected listing body")
    return body.get("items") or [], body.get("_pagination") or {}


class Prefetch:
    """At most one page request in flight, started before the caller needs the page."""

    def __init__(self, fetch: Fetch):
        self._fetch = fetch
        self._task: asyncio.Future | None = None

    @property
    def pending(self) -> bool:
        return self._task is not None

    def start(self, offset: int, limit: int | None = None) -> None:
        self._task = asyncio.ensure_future(self._fetch(offset, limit))

    async def take(self) -> Page:
        """The page started last (awaited now)."""
        task, self._task = self._task, None
        if task is None:
            raise RuntimeError("no page was started")
        return await task

    async def cancel(self) -> None:
        """Drop a page still in flight (the caller stopped reading)."""
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass


async def read_forward(
    pages: Prefetch, items: list, pagination: dict | None, limit: int
) -> AsyncIterator[dict]:
    """Every item from the first page's ``items`` on, following ``next`` links.

    A ``next`` that does not move forward ends the listing (a hub cannot loop us).
    """
    last_offset = 0
    for _ in range(MAX_PAGES):
        following = pagination.get("next") if pagination else None
        if following and items:
            offset = int(following.get("offset") or 0)
            if offset > last_offset:
                last_offset = offset
                pages.start(offset, int(following.get("limit") or limit))
        for item in items:
            yield item
        if not pages.pending:
            return
        items, pagination = await pages.take()


async def read_last_page_first(
    pages: Prefetch, first_items: list, pagination: dict, limit: int
) -> AsyncIterator[dict]:
    """Every item, the pages from the last (by the first page's ``total``) down to the second,
    then the first page's ``first_items``."""
    total = int(pagination.get("total") or 0)
    last = limit * ((max(total, 1) - 1) // limit)
    offsets = list(range(last, 0, -limit))[:MAX_PAGES]
    if offsets:
        pages.start(offsets[0], limit)
    for i in range(len(offsets)):
        items, _ = await pages.take()
        if i + 1 < len(offsets):
            pages.start(offsets[i + 1], limit)
        for item in items:
            yield item
    for item in first_items:
        yield item
