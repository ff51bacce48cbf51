"""A person of one's own per browser test module.

The app limits messages a minute and replies at once per person, so modules that send
many messages each log in as someone else instead of sharing alice.
"""

from __future__ import annotations

from collections.abc import Iterator

from playwright.sync_api import Browser, Page

from tests.e2e.conftest import log_in
from tests.servers import PASSWORD, AppServer, manage


def make_person(app: AppServer, username: str) -> str:
    manage(
        app.env,
        "shell",
        "-c",
        "from django.contrib.auth.models import User\n"
        f"User.objects.filter(username={username!r}).exists() or "
        f"User.objects.create_user({username!r}, password={PASSWORD!r})\n",
    )
    return username


def open_page(browser: Browser, app: AppServer, username: str, **context_options) -> Iterator[Page]:
    """A logged-in page on a new conversation; the clipboard may be read back."""
    context = browser.new_context(base_url=app.url, **context_options)
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=app.url)
    page = context.new_page()
    log_in(page, app.url, username)
    page.get_by_role("button", name="New chat").click()
    page.wait_for_load_state()
    yield page
    context.close()
