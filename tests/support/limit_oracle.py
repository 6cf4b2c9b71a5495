"""A reference for the user-limit policy in tests: the decision over full lists of places and
waiters, recomputed from scratch (the service keeps the same facts incrementally)."""

from __future__ import annotations

from collections.abc import Sequence

from jupyterhub_lab_ext.services.user_limit.policy import (
    Decision,
    Limits,
    Place,
    Request,
    decide,
    usage,
)


def queue_position(queue: Sequence[Request], user: str) -> int:
    """1-based position of ``user`` in ``queue``, 0 if not queued."""
    for i, w in enumerate(queue):
        if w.user == user:
            return i + 1
    return 0


def decide_on_lists(
    limits: Limits, places: Sequence[Place], queue: Sequence[Request], req: Request
) -> Decision:
    """:func:`~jupyterhub_lab_ext.services.user_limit.policy.decide` with every fact derived
    from the lists of places in use and waiters in line."""
    reserved = any(p.user == req.user and p.reserved for p in places)
    held = any(p.user == req.user and p.server_name == req.server_name for p in places)
    position = queue_position(queue, req.user)
    ahead = queue[: position - 1] if position else queue
    return decide(limits, usage(places), req, held, reserved, len(queue), position, ahead)
