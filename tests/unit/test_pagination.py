"""The two ways of reading a paginated listing, on an in-memory listing (no HTTP).

HubAPI.paginate over a fake hub is tested in test_hubapi.py.
"""

import asyncio

import pytest

from jupyterhub_lab_ext.services.common.pagination import (
    ListingError,
    Prefetch,
    read_forward,
    read_last_page_first,
    unpack,
)


class Listing:
    """An in-memory listing of ``n`` items served by ``offset``/``limit``; records each fetch."""

    def __init__(self, n: int, limit: int):
        self.items = list(range(n))
        self.limit = limit
        self.fetched: list[int] = []

    async def fetch(self, offset: int, limit: int | None):
        self.fetched.append(offset)
        limit = limit or self.limit
        following = offset + limit
        nxt = {"offset": following, "limit": limit} if following < len(self.items) else None
        page = self.items[offset : offset + limit]
        return page, {"offset": offset, "limit": limit, "total": len(self.items), "next": nxt}


async def _read(algorithm, listing: Listing) -> list:
    pages = Prefetch(listing.fetch)
    items, pagination = await listing.fetch(0, None)
    return [x async for x in algorithm(pages, items, pagination, listing.limit)]


@pytest.mark.parametrize("n, limit", [(1, 10), (10, 10), (11, 10), (95, 10), (3, 1)])
async def test_read_forward_is_the_hubs_order(n, limit):
    listing = Listing(n, limit)
    assert await _read(read_forward, listing) == list(range(n))
    assert listing.fetched == list(range(0, n, limit))


@pytest.mark.parametrize("n, limit", [(1, 10), (10, 10), (11, 10), (95, 10), (3, 1)])
async def test_read_last_page_first_reads_backward_then_the_first_page(n, limit):
    listing = Listing(n, limit)
    items = await _read(read_last_page_first, listing)
    assert sorted(items) == list(range(n)) and len(items) == n
    assert listing.fetched == [0, *range(limit * ((n - 1) // limit), 0, -limit)]
    assert items[-min(n, limit) :] == list(range(min(n, limit)))  # the first page comes last


async def test_read_forward_stops_at_a_next_link_that_does_not_advance():
    async def stuck(offset, limit):
        return [offset], {"next": {"offset": 5, "limit": 5}}

    pages = Prefetch(stuck)
    items = [x async for x in read_forward(pages, [0], {"next": {"offset": 5}}, 5)]
    assert items == [0, 5]  # the second "next" points at the same page: the listing ends


async def test_prefetch_cancel_drops_the_page_in_flight():
    started = asyncio.Event()

    async def slow(offset, limit):
        started.set()
        await asyncio.sleep(60)

    pages = Prefetch(slow)
    pages.start(10)
    await started.wait()
    await pages.cancel()
    assert not pages.pending
    with pytest.raises(RuntimeError):
        await pages.take()


@pytest.mark.parametrize(
    "body, expected",
    [
        ([1, 2], ([1, 2], None)),
        ({"items": [1], "_pagination": {"next": None}}, ([1], {"next": None})),
        ({}, ([], {})),
    ],
    ids=["bare list", "paginated", "empty"],
)
def test_unpack(body, expected):
    assert unpack(body) == expected


@pytest.mark.parametrize(
    "body", [None, "text", {"items": "x"}, {"items": None}], ids=["none", "text", "str", "null"]
)
def test_unpack_refuses_other_answers(body):
    with pytest.raises(ListingError):
        unpack(body)
