"""Who owns a token, asked of the hub at most once per short while.

:class:`TokenOwners` keeps the hub's answers for a few seconds (a refusal a little longer),
keyed by a SHA-256 of the token (never the token), and lets concurrent lookups of one token
share one hub request. How the hub is asked is given to it (``HubAPI`` passes its
``GET /user`` call), so it holds no client of its own.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Awaitable, Callable

#: ``ask(token)``: the hub's model of the token's owner, or None for an invalid token
Ask = Callable[[str], Awaitable[dict | None]]


class TTLCache:
    """Small dict with per-entry expiry and a size bound; keys are token hashes, never tokens."""

    def __init__(
        self, ttl: float, max_entries: int = 10_000, clock: Callable[[], float] = time.monotonic
    ):
        self.ttl = ttl
        self.max_entries = max_entries
        self.clock = clock
        self._data: dict[str, tuple[float, object]] = {}

    def get(self, key: str) -> tuple[bool, object]:
        """``(True, value)`` for a live entry, ``(False, None)`` otherwise."""
        hit = self._data.get(key)
        if hit is None:
            return False, None
        expires, value = hit
        if expires < self.clock():
            del self._data[key]
            return False, None
        return True, value

    def set(self, key: str, value, ttl: float | None = None) -> None:
        now = self.clock()
        if len(self._data) >= self.max_entries:
            for k in [k for k, (exp, _) in self._data.items() if exp < now]:
                del self._data[k]
            while len(self._data) >= self.max_entries:
                self._data.pop(next(iter(self._data)))
        self._data[key] = (now + (self.ttl if ttl is None else ttl), value)

    def clear(self) -> None:
        self._data.clear()


def token_key(token: str) -> str:
    """The cache key of a token: its SHA-256, so no token is kept in memory by the cache."""
    return hashlib.sha256(token.encode("utf8", "replace")).hexdigest()


class TokenOwners:
    """The owner of a token (a user or service model with the token's ``scopes``), cached.

    :param ask: asks the hub; its errors propagate and are never cached.
    :param ttl: seconds a valid token's answer is reused: the longest a revoked token or a
        demoted owner can still be taken for what it was.
    :param negative_ttl: seconds an invalid token's answer (a refusal) is reused.
    """

    def __init__(self, ask: Ask, *, ttl: float, negative_ttl: float):
        self._ask = ask
        self.negative_ttl = negative_ttl
        self._cache = TTLCache(ttl)
        self._lookups: dict[str, asyncio.Future] = {}

    async def owner(self, token: str, *, fresh: bool = False) -> dict | None:
        """The owner of ``token`` or None; ``fresh=True`` skips the cache (use it before any
        change) and caches its answer for the next callers."""
        if not token:
            return None
        key = token_key(token)
        if fresh:
            # a lookup sent after this call began: never one that was already in flight
            return await self._ask_and_keep(key, token)
        hit, value = self._cache.get(key)
        if hit:
            return value
        pending = self._lookups.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        fut = asyncio.get_running_loop().create_future()
        self._lookups[key] = fut
        try:
            model = await self._ask_and_keep(key, token)
            fut.set_result(model)
            return model
        except BaseException as e:
            fut.set_exception(e)
            fut.exception()  # mark retrieved when nobody else waits
            raise
        finally:
            del self._lookups[key]

    async def _ask_and_keep(self, key: str, token: str) -> dict | None:
        model = await self._ask(token)
        self._cache.set(key, model, None if model else self.negative_ttl)
        return model

    def clear(self) -> None:
        """Forget every answer (e.g. after a role change in tests)."""
        self._cache.clear()
