"""A planted API key reaches the upstream and nowhere else a person or an admin can see."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.e2e.conftest import log_in
from tests.e2e.test_streaming import last_reply, send
from tests.servers import AppServer, app_env, manage, prepare_database, start_app, start_simulator

KEY = "sk-planted-7f3a9c1e5b2d4068a1b3c5d7e9f0a2b4"


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[AppServer, object]]:
    var_dir = tmp_path_factory.mktemp("secrets")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PLANTED_KEY", KEY)
        with start_simulator(tps=200, api_key_env="PLANTED_KEY") as simulator:
            providers = var_dir / "providers.toml"
            providers.write_text(
                f'[[providers]]\nname = "vendor"\ndialect = "openai-chat"\n'
                f'base_url = "{simulator.url}/v1"\napi_key_env = "PLANTED_KEY"\n'
                'models = [{ name = "m1", input_price = 1, output_price = 2 }]\n'
            )
            env = app_env(var_dir, simulator.url, CHAT_PROVIDERS_FILE=str(providers))
            prepare_database(env)
            manage(
                {**env, "DJANGO_SUPERUSER_USERNAME": "root", "DJANGO_SUPERUSER_PASSWORD": "root-pass-123"},
                "ensure_login",
            )
            server = start_app(env, log=var_dir / "daphne.log")
            server.extra.update(var_dir=var_dir, log=var_dir / "daphne.log", sim=simulator)
            yield server
            server.stop()


def test_the_key_never_leaves_the_server(browser: Browser, keyed: AppServer) -> None:
    context = browser.new_context(base_url=keyed.url)
    page: Page = context.new_page()
    frames: list[str] = []

    def record(ws) -> None:
        ws.on("framereceived", lambda payload: frames.append(str(payload)))
        ws.on("framesent", lambda payload: frames.append(str(payload)))

    page.on("websocket", record)
    log_in(page, keyed.url)
    send(page, "hello [sim tokens=20]")
    expect(last_reply(page)).to_have_attribute("data-status", "complete", timeout=10_000)
    send(page, "fail [sim tokens=20 fail=error after=5]")
    expect(last_reply(page)).to_have_attribute("data-status", "error", timeout=10_000)
    # An upstream that echoes the key in its error, as some vendors do: cut out on the page.
    send(page, "echo [sim tokens=20 fail=status status=401 message='Invalid API key {key}']")
    expect(last_reply(page)).to_have_attribute("data-status", "error", timeout=10_000)
    expect(last_reply(page).locator(".error-text")).to_contain_text("Invalid API key [the API key]")
    assert len(frames) > 5
    seen = {"chat page": page.content(), "frames": "\n".join(frames)}
    seen["own export"] = page.request.get("/export/").text()

    admin = browser.new_context(base_url=keyed.url)
    staff = admin.new_page()
    log_in(staff, keyed.url, "root", password="root-pass-123", landing="/admin/")
    changelist = staff.request.get("/admin/chat/conversation/").text()
    seen["admin changelist"] = changelist
    conversation_id = page.url.rstrip("/").rsplit("/", 1)[-1]
    seen["admin transcript"] = staff.request.get(
        f"/admin/chat/conversation/{conversation_id}/transcript/"
    ).text()
    seen["jsonl export"] = manage(keyed.env, "export_jsonl")
    with sqlite3.connect(keyed.extra["var_dir"] / "db.sqlite3") as connection:
        seen["database"] = "\n".join(connection.iterdump())
    seen["server log"] = keyed.extra["log"].read_text()

    requests = keyed.extra["sim"].requests()
    assert requests and all(r["authorized"] and r["outcome"] != "unauthorized" for r in requests)
    # The pages searched are the real ones, not a login form they redirected to.
    assert "hello [sim tokens=20]" in seen["admin transcript"]
    assert "Read transcript" in seen["admin changelist"]
    assert json.loads(seen["own export"]) is not None
    leaks = [where for where, text in seen.items() if KEY in text or KEY[8:] in text]
    assert leaks == []
    context.close()
    admin.close()
