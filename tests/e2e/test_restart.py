"""A restart, as `make run` does one (ensure_login with the superuser variables, then the
server), keeps the people who were signed in signed in."""

from __future__ import annotations

import pytest
from playwright.sync_api import Browser, expect

from tests.e2e.conftest import log_in
from tests.servers import SimulatorProcess, app_env, manage, prepare_database, start_app

ROOT_LOGIN = {"DJANGO_SUPERUSER_USERNAME": "root", "DJANGO_SUPERUSER_PASSWORD": "a-long-root-password"}


def test_a_restart_with_the_superuser_variables_keeps_the_browser_signed_in(
    browser: Browser, simulator: SimulatorProcess, tmp_path_factory: pytest.TempPathFactory
) -> None:
    env = app_env(tmp_path_factory.mktemp("restart"), simulator.url, **ROOT_LOGIN)
    prepare_database(env)
    manage(env, "ensure_login")
    server = start_app(env)
    context = browser.new_context(base_url=server.url)
    page = context.new_page()
    try:
        log_in(page, server.url, "root", password=ROOT_LOGIN["DJANGO_SUPERUSER_PASSWORD"])
        signed_in_at = page.url

        server.stop()
        manage(env, "ensure_login")  # what `make run` does on every start
        server = start_app(env, port=server.port)
        page.goto(signed_in_at)

        expect(page).to_have_url(signed_in_at)
        expect(page.get_by_role("button", name="Log out root")).to_be_visible()
    finally:
        context.close()
        server.stop()
