"""Scale-out fixtures: daphne workers on real Redis and PostgreSQL, each test on a fresh
database and a Redis key prefix of its own.

The services come from ``REDIS_URL_FOR_TESTS`` and ``DATABASE_URL_FOR_TESTS`` (``bash
.ci/run`` sets both); only the workers see them, so the test process itself stays on
SQLite and the in-memory layer. Unset, the tests that need them skip, saying how to run
them; with ``CHAT_REQUIRE_SCALEOUT=1`` an unset or unreachable service fails them.
"""

from __future__ import annotations

import os
import secrets
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest
import redis
from playwright.sync_api import Browser, sync_playwright
from psycopg.rows import dict_row

from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS
from tests.scaleout.clients import Session
from tests.servers import (
    ROOT,
    AppServer,
    SimulatorProcess,
    app_env,
    free_port,
    prepare_database,
    wait_for_port,
)

ASGI_APPLICATION = "chatsite.asgi:application"
HOW_TO_RUN = (
    "run `bash .ci/run`, or set REDIS_URL_FOR_TESTS=redis://127.0.0.1:6379/0 and "
    "DATABASE_URL_FOR_TESTS=postgres://postgres@127.0.0.1:5432/postgres (a role that may create databases)"
)


@dataclass(frozen=True)
class Services:
    redis_url: str
    # A connection that may create databases: each test gets one of its own through it.
    admin_url: str

    def database_url(self, name: str) -> str:
        return urlsplit(self.admin_url)._replace(path=f"/{name}").geturl()

    def execute(self, sql: str) -> None:
        with psycopg.connect(self.admin_url, autocommit=True, connect_timeout=5) as connection:
            connection.execute(sql)


def unreachable(redis_url: str, admin_url: str) -> str:
    try:
        redis.Redis.from_url(redis_url, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        return f"Redis at {redis_url} is unreachable ({exc})"
    try:
        psycopg.connect(admin_url, connect_timeout=3).close()
    except psycopg.Error as exc:
        return f"PostgreSQL at {admin_url} is unreachable ({exc})"
    return ""


@pytest.fixture(scope="session")
def services() -> Services:
    redis_url = os.environ.get("REDIS_URL_FOR_TESTS", "")
    admin_url = os.environ.get("DATABASE_URL_FOR_TESTS", "")
    if not (redis_url and admin_url):
        problem = "REDIS_URL_FOR_TESTS and DATABASE_URL_FOR_TESTS are unset"
    else:
        problem = unreachable(redis_url, admin_url)
    if problem and os.environ.get("CHAT_REQUIRE_SCALEOUT") == "1":
        pytest.fail(f"CHAT_REQUIRE_SCALEOUT=1, but {problem}")
    if problem:
        pytest.skip(f"needs Redis and PostgreSQL, but {problem}: {HOW_TO_RUN}")
    return Services(redis_url, admin_url)


@pytest.fixture(scope="session")
def template_database(
    services: Services, simulator: SimulatorProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A migrated database with the test users; each test copies it, which takes milliseconds."""
    name = f"chat_scaleout_template_{secrets.token_hex(4)}"
    services.execute(f'CREATE DATABASE "{name}"')
    try:
        env = app_env(
            tmp_path_factory.mktemp("template"), simulator.url, DATABASE_URL=services.database_url(name)
        )
        prepare_database(env)
        yield name
    finally:
        services.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class Database:
    """Read access to one test's PostgreSQL database, to compare with what clients saw."""

    def __init__(self, url: str) -> None:
        self.url = url

    def rows(self, sql: str, *params: Any) -> list[dict[str, Any]]:
        with psycopg.connect(self.url, row_factory=dict_row) as connection:
            return connection.execute(sql, params).fetchall()

    def reply(self, message_id: int) -> dict[str, Any]:
        return self.rows("SELECT * FROM chat_message WHERE id = %s", message_id)[0]


@dataclass
class Cluster:
    """What the workers of one test share: a database, a Redis prefix, an environment."""

    env: dict[str, str]
    db: Database
    workers: list[AppServer]

    def start(self, count: int = 1, **overrides: str) -> list[AppServer]:
        """Start ``count`` workers, with these settings on top of the shared ones."""
        started = launch_workers({**self.env, **overrides}, count)
        self.workers += started
        return started


def launch_workers(env: dict[str, str], count: int) -> list[AppServer]:
    """Start daphne workers side by side: each takes a second or two to import Django."""
    workers = []
    for port in (free_port() for _ in range(count)):
        command = [sys.executable, "-m", "chat.serve", "-b", "127.0.0.1", "-p", str(port), ASGI_APPLICATION]
        process = subprocess.Popen(command, cwd=ROOT, env=env)
        workers.append(AppServer(f"http://127.0.0.1:{port}", env, process, port))
    for worker in workers:
        wait_for_port(worker.port, worker.process)
    return workers


@pytest.fixture
def cluster(
    services: Services, template_database: str, simulator: SimulatorProcess, tmp_path: Path
) -> Iterator[Cluster]:
    name = f"chat_scaleout_{secrets.token_hex(6)}"
    prefix = f"chat-test-{secrets.token_hex(6)}"
    services.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_database}"')
    env = app_env(
        tmp_path,
        simulator.url,
        DATABASE_URL=services.database_url(name),
        REDIS_URL=services.redis_url,
        CHANNEL_PREFIX=prefix,
    )
    cluster = Cluster(env, Database(services.database_url(name)), [])
    try:
        yield cluster
    finally:
        for worker in cluster.workers:
            worker.stop()
        services.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        keys = redis.Redis.from_url(services.redis_url)
        for key in keys.scan_iter(f"{prefix}*"):
            keys.delete(key)


@pytest.fixture(scope="session")
def sqlite_template(simulator: SimulatorProcess, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite database with the test users, for single-worker tests to copy."""
    var_dir = tmp_path_factory.mktemp("sqlite-template")
    prepare_database(app_env(var_dir, simulator.url))
    return var_dir / "db.sqlite3"


@pytest.fixture
def sqlite_cluster(sqlite_template: Path, simulator: SimulatorProcess, tmp_path: Path) -> Iterator[Cluster]:
    """Workers on the default stack (SQLite, in-memory layer): one, since nothing is shared."""
    (tmp_path / "db.sqlite3").write_bytes(sqlite_template.read_bytes())
    cluster = Cluster(app_env(tmp_path, simulator.url), SqliteDatabase(tmp_path / "db.sqlite3"), [])
    yield cluster
    for worker in cluster.workers:
        worker.stop()


class SqliteDatabase(Database):
    def __init__(self, path: Path) -> None:
        self.path = path

    def rows(self, sql: str, *params: Any) -> list[dict[str, Any]]:
        with sqlite3.connect(self.path) as connection:
            connection.row_factory = sqlite3.Row
            return [dict(row) for row in connection.execute(sql.replace("%s", "?"), params)]


# Module scope, like the browser tests' own: Playwright's sync API keeps its event loop
# running while it is open, which would stop the async tests that run after these.
@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def add_session(context: Any, session: Session, url: str) -> None:
    """Give a browser context the session's cookies; they hold for every worker's port."""
    context.add_cookies(
        [{"name": name, "value": value, "url": url} for name, value in session.cookies.items()]
    )
