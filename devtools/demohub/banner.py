"""What the demo prints once its hub runs: what is where and what to try."""

from __future__ import annotations

from .config import DEFAULT_ENV
from .envs import PERSONAL, SHARED
from .layout import CULL_EVERY, CULL_TIMEOUT, CULLER, MAX_ACTIVE_SERVERS, USER_LIMIT, Layout
from .people import ENV_OWNER, Verdict

READY = "Demo hub running"


def who_lines(verdicts: list[Verdict]) -> list[str]:
    width = max((len(v.login) for v in verdicts), default=0)
    lines = []
    for v in verdicts:
        also = f" (identity {v.identity})" if v.identity != v.login else ""
        if v.admitted:
            own = f"; has her own env mine/{PERSONAL.name}" if v.login == ENV_OWNER else ""
            lines.append(f"      {v.login:<{width}}  {v.why or 'listed'}{own}{also}")
        else:
            lines.append(f"      {v.login:<{width}}  refused: {v.why}{also}")
    return lines


def banner(layout: Layout, verdicts: list[Verdict], userlist_error: str = "") -> str:
    hub = layout.hub_url
    culler, limit = layout.service_url(CULLER), layout.service_url(USER_LIMIT)
    admitted = [v.login for v in verdicts if v.admitted]
    first, second, third = (admitted + ["alice", "bob", "carol"])[:3]
    shared = ", ".join(f"shared/{s.name} ({s.purpose})" for s in SHARED)
    who = who_lines(verdicts)
    if userlist_error:
        who = [
            f"      the userlist has errors, the last good version stays in force: {userlist_error}"
        ]
    lines = [
        "",
        f"==> {READY} at {hub}/",
        "",
        f'    Log in at {hub}/ with "Sign in with the demo provider", any password:',
        *who,
        f"    Userlist, edit it while the hub runs: {layout.userlist}",
        "",
        f"    Spawn form: {shared}, plus each user's own envs; default {DEFAULT_ENV}.",
        f"      Shared envs live in {layout.envs_dir}.",
        f"    User limit: at most {MAX_ACTIVE_SERVERS} running servers. Start {first}'s and "
        f"{second}'s, then {third}'s:",
        f"      {third} waits on the live queue page {limit}queue and her server starts",
        f'      by itself when another one stops ("Stop My Server" on {hub}/hub/home).',
        f"      Queue and usage as JSON (logged in as {first}): {limit}api/queue, {limit}api/status",
        f"    Idle culler: stops servers idle for {CULL_TIMEOUT // 60} min, looks every "
        f"{CULL_EVERY} s.",
        f"      {culler}health (no login), {culler}api/status and {culler}metrics",
        f"      (logged in as {first})",
        f"    Logs: {layout.hub_log} (hub and services), {layout.provider_log}",
        "    Stop everything with Ctrl-C.",
        "",
    ]
    return "\n".join(lines)
