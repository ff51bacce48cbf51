"""Browser fixtures: the app under daphne, the simulator, and Debian's Chromium."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from tests.servers import PASSWORD, AppServer, SimulatorProcess, app_env, prepare_database, start_app

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
]
ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"


# Module scope: Playwright's sync API keeps its event loop running while it is open,
# which would stop the async tests that run after the browser tests.
@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail("Chromium is missing: `make test` installs Debian's chromium package")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="session")
def app(simulator: SimulatorProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppServer]:
    var_dir = tmp_path_factory.mktemp("app")
    env = app_env(var_dir, simulator.url)
    prepare_database(env)
    server = start_app(env)
    server.extra["db"] = var_dir / "db.sqlite3"
    yield server
    server.stop()


class Database:
    """Read-only access to the app server's SQLite file, to compare with the page."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def reply(self, message_id: int) -> dict:
        with sqlite3.connect(self.path) as connection:
            connection.row_factory = sqlite3.Row
            row = connection.execute("SELECT * FROM chat_message WHERE id = ?", (message_id,)).fetchone()
        return dict(row)


@pytest.fixture
def db(app: AppServer) -> Database:
    return Database(app.extra["db"])


def log_in(
    page: Page, base_url: str, username: str = "alice", password: str = PASSWORD, landing: str = ""
) -> None:
    """Log in through the form; ``landing`` is where to go next (default: the chat)."""
    page.goto(f"{base_url}/accounts/login/" + (f"?next={landing}" if landing else ""))
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{base_url}{landing or '/conversations/'}**")


@pytest.fixture
def page(browser: Browser, app: AppServer, sim: SimulatorProcess) -> Iterator[Page]:
    """A logged-in page as alice, on a new conversation."""
    context = browser.new_context(base_url=app.url)
    page = context.new_page()
    log_in(page, app.url)
    page.get_by_role("button", name="New chat").click()
    yield page
    context.close()
