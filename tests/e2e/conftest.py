"""Fixtures for end-to-end tests with real components (see harness.py).

- ``oidc``: a session-wide OIDC provider; ``oidc.set_identity(login, email=..., groups=[...])``.
- ``user_prefix``: a unique prefix (e.g. ``jt3fa2-``) for the system users of one test; every user
  with it is removed (processes killed, account, group and home deleted) after the test.
- ``home_root``: a fresh world-traversable directory for the homes of one test.
- ``make_hub(config="", userlist=None, authenticator="userlist", start=True)``: a running hub
  configured against ``oidc`` with the userlist authenticator; stopped after the test.
- ``browser``: a headless Chromium (Playwright, Debian's /usr/bin/chromium), one per test;
  ``page``: a fresh page in a fresh context.
- ``postgres``: a PostgreSQL server in a temp dir; ``postgres.url(dbname)`` creates a database.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from harness import (
    ARTIFACTS,
    Hub,
    OIDCProvider,
    Process,
    ensure_installed,
    free_port,
    remove_test_users,
    wait_until,
)

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


def pytest_collection_modifyitems(config, items):
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.e2e)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    rep = yield
    setattr(item, f"rep_{rep.when}", rep)
    return rep


@pytest.fixture(scope="session", autouse=True)
def _e2e_requirements():
    if os.geteuid() != 0:
        pytest.fail("end-to-end tests run as root (they create system users and setuid servers)")
    ensure_installed()
    ARTIFACTS.mkdir(exist_ok=True)


@pytest.fixture(scope="session")
def oidc(tmp_path_factory):
    provider = OIDCProvider(tmp_path_factory.mktemp("oidc")).start()
    try:
        yield provider
    finally:
        provider.stop()


@pytest.fixture
def user_prefix():
    prefix = f"jt{secrets.token_hex(2)}-"
    try:
        yield prefix
    finally:
        remove_test_users(prefix, [Path(tempfile.gettempdir())])


@pytest.fixture
def home_root():
    # not under pytest's tmp_path: that is 0700 and spawned users could not reach their homes
    path = Path(tempfile.mkdtemp(prefix="jhle-homes-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def make_hub(request, tmp_path, oidc, user_prefix, home_root):
    hubs: list[Hub] = []

    def factory(
        config: str = "",
        *,
        userlist: str | None = None,
        authenticator: str | None = "userlist",
        start: bool = True,
        **kwargs,
    ) -> Hub:
        kwargs.setdefault("home_root", home_root)
        kwargs.setdefault("username_prefix", user_prefix)
        hub = Hub(
            tmp_path / f"hub{len(hubs)}",
            config=config,
            provider=oidc,
            authenticator=authenticator,
            userlist=userlist,
            **kwargs,
        )
        hubs.append(hub)
        if start:
            hub.start()
        return hub

    try:
        yield factory
    finally:
        failed = getattr(request.node, "rep_call", None)
        for hub in hubs:
            hub.stop()
            if failed is not None and failed.failed:
                print(f"--- hub log ({hub.workdir}) ---\n{hub.log_tail(120)}")


@pytest.fixture
def browser():
    """Headless Chromium for one test. Playwright's sync API runs an event loop in this thread while
    it is open, so it is started and stopped per test: a session-wide one would break every later
    ``async def`` test ("cannot be called from a running event loop")."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    pg = context.new_page()
    pg.set_default_timeout(60_000)
    try:
        yield pg
    finally:
        context.close()


class Postgres:
    """A PostgreSQL cluster in a temp dir, run as the ``postgres`` user on 127.0.0.1."""

    BIN = Path("/usr/lib/postgresql/15/bin")

    def __init__(self, root: Path):
        self.root = root
        self.data = root / "data"
        self.port = free_port()
        shutil.chown(root, "postgres")
        root.chmod(0o700)
        subprocess.run(
            [
                "runuser",
                "-u",
                "postgres",
                "--",
                str(self.BIN / "initdb"),
                "-A",
                "trust",
                "-U",
                "postgres",
                "-D",
                str(self.data),
            ],
            check=True,
            capture_output=True,
        )
        self.process = Process(
            [
                "runuser",
                "-u",
                "postgres",
                "--",
                str(self.BIN / "postgres"),
                "-D",
                str(self.data),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                f"port={self.port}",
                "-c",
                f"unix_socket_directories={root}",
            ],
            log_path=root.parent / f"postgres-{self.port}.log",
        )

    def start(self) -> Postgres:
        self.process.start()
        wait_until(
            lambda: (
                subprocess.run(
                    [str(self.BIN / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)],
                    capture_output=True,
                ).returncode
                == 0
            ),
            timeout=30,
            what="postgres ready",
        )
        return self

    def psql(self, sql: str) -> None:
        subprocess.run(
            [
                "psql",
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                "postgres",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                sql,
            ],
            check=True,
            capture_output=True,
        )

    def url(self, dbname: str | None = None) -> str:
        """A SQLAlchemy URL (psycopg 3) of a fresh database."""
        dbname = dbname or f"db_{secrets.token_hex(4)}"
        self.psql(f"CREATE DATABASE {dbname}")
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{dbname}"

    def stop(self) -> None:
        self.process.stop()


@pytest.fixture(scope="session")
def postgres():
    root = Path(tempfile.mkdtemp(prefix="jhle-pg-"))
    root.chmod(0o755)  # the postgres user must reach its cluster directory
    (root / "cluster").mkdir()
    pg = Postgres(root / "cluster").start()
    try:
        yield pg
    finally:
        pg.stop()
        shutil.rmtree(root, ignore_errors=True)
