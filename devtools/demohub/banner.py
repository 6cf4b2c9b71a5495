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
            f"      (the userlist has errors; the last good version stays in force)\n{userlist_error}"
        ]
    lines = [
        "",
        f"==> {READY} at {hub}/",
        "",
        '    Log in there ("Sign in with the demo provider", any password) as',
        *who,
        f"    The userlist, edit it while the hub runs: {layout.userlist}",
        "",
        f"    Spawn form: {shared}",
        f"      from {layout.envs_dir}, and each user's own envs. Default: {DEFAULT_ENV}.",
        f"    User limit: at most {MAX_ACTIVE_SERVERS} running servers. Start servers as {first} "
        f"and {second}, then as {third}:",
        f"      {third} waits on the live queue page, and the server starts by itself when one",
        f'      of the others stops ("Stop My Server" at {hub}/hub/home).',
        f"        queue page     {limit}queue",
        f"        queue (JSON)   {limit}api/queue    (as {first})",
        f"        usage (JSON)   {limit}api/status   (as {first})",
        f"    Idle culler: stops servers idle for {CULL_TIMEOUT // 60} min, looks every "
        f"{CULL_EVERY} s.",
        f"        health         {culler}health      (no login)",
        f"        status (JSON)  {culler}api/status  (as {first})",
        f"        metrics        {culler}metrics     (as {first})",
        f"    Admin dashboards, live (as {first}, an admin; also in the hub's Services menu):",
        f"        user limit     {limit}dashboard",
        f"        idle culler    {culler}dashboard",
        f"    Logs: {layout.hub_log} (hub and services), {layout.provider_log.name} next to it",
        "    Stop everything with Ctrl-C.",
        "",
    ]
    return "\n".join(lines)
