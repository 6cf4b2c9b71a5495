"""A user's hub groups, for per-group timeouts and exemptions.

From the user model when the culler may read groups (``read:users:groups``); otherwise from one
``GET /groups`` walk, shared by every user of a pass.
"""

from __future__ import annotations

import asyncio

from jupyterhub_lab_ext.services.common.hubapi import HubAPI


async def group_members(hub: HubAPI) -> dict[str, list[str]]:
    """user -> groups, from ``GET /groups``."""
    members: dict[str, list[str]] = {}
    async for group in hub.iter_groups():
        for user in group.get("users") or []:
            members.setdefault(user, []).append(group["name"])
    return members


class GroupLookup:
    """The groups of users, for one pass (or one request). ``needed`` False: always none."""

    def __init__(self, hub: HubAPI, needed: bool):
        self.hub = hub
        self.needed = needed
        self._walk: asyncio.Future | None = None

    async def of(self, user: dict) -> list[str]:
        if not self.needed:
            return []
        if "groups" in user:
            return list(user["groups"] or [])
        if self._walk is None:  # one GET /groups walk, shared by all users
            self._walk = asyncio.ensure_future(group_members(self.hub))
        return (await asyncio.shield(self._walk)).get(user["name"], [])
