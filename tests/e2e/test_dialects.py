"""Every dialect in the browser, against the simulator through a providers file."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.e2e.conftest import log_in
from tests.e2e.test_streaming import RECORD_GROWTH, last_reply, send
from tests.servers import AppServer, SimulatorProcess, app_env, prepare_database, start_app
from tests.streams import SIM_MODELS, sim_providers

IMAGE = "https://example.com/cat.png"


@pytest.fixture(scope="module")
def dialect_app(simulator: SimulatorProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppServer]:
    var_dir = tmp_path_factory.mktemp("dialects")
    providers = var_dir / "providers.toml"
    providers.write_text(sim_providers().replace("{sim}", simulator.url))
    env = app_env(var_dir, simulator.url, CHAT_PROVIDERS_FILE=str(providers), SIM_KEY="sk-sim")
    prepare_database(env)
    server = start_app(env)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def signed_in(browser: Browser, dialect_app: AppServer) -> dict:
    """Alice's cookies, so each test starts logged in without logging in again."""
    context = browser.new_context(base_url=dialect_app.url)
    log_in(context.new_page(), dialect_app.url)
    state = context.storage_state()
    context.close()
    return state


@pytest.fixture
def page(browser: Browser, dialect_app: AppServer, signed_in: dict, sim: SimulatorProcess) -> Iterator[Page]:
    """A new conversation, as alice."""
    context = browser.new_context(base_url=dialect_app.url, storage_state=signed_in)
    page = context.new_page()
    page.goto("/")
    page.get_by_role("button", name="New chat").click()
    yield page
    context.close()


def use_dialect(page: Page, dialect: str) -> None:
    settings = page.locator("details.settings")
    settings.locator("summary").click()
    settings.get_by_label("Model").select_option(f"{dialect}/{SIM_MODELS[dialect]}")
    settings.get_by_role("button", name="Save").click()
    expect(settings.locator("summary")).to_have_text(f"{dialect} · {SIM_MODELS[dialect]}")


@pytest.mark.parametrize("dialect", list(SIM_MODELS))
def test_each_dialect_streams_into_the_page_with_its_usage(
    page: Page, sim: SimulatorProcess, dialect: str
) -> None:
    use_dialect(page, dialect)
    page.evaluate(RECORD_GROWTH)
    send(page, f"Hello from {dialect} [sim tokens=40 tps=60]")

    reply = last_reply(page)
    expect(reply).to_have_attribute("data-status", "complete", timeout=10_000)
    growth = page.evaluate("window.growth")
    assert len([n for before, n in zip([0, *growth], growth, strict=False) if n > before]) >= 3, growth
    expect(reply.locator("h2")).to_have_text(f"Hello from {dialect}")
    assert sim.last()["dialect"] == dialect
    tokens = reply.locator(".tokens")
    if dialect == "text-delta":
        expect(tokens).to_contain_text("(estimated)")
    else:
        expect(tokens).not_to_contain_text("estimated")


def test_a_pending_retry_shows_on_the_reply_then_it_streams(page: Page, sim: SimulatorProcess) -> None:
    use_dialect(page, "openai-chat")
    send(page, "Busy? [sim fail=status status=503 times=1 retry_after=1 tokens=10 tps=100]")
    expect(last_reply(page).locator(".note")).to_contain_text("The demo model is overloaded. Retrying in 1 s")
    expect(last_reply(page)).to_have_attribute("data-status", "complete", timeout=10_000)
    assert [r["outcome"] for r in sim.requests()][:2] == ["status 503", "complete"]


def test_an_image_url_is_sent_with_the_message(page: Page, sim: SimulatorProcess) -> None:
    use_dialect(page, "muapi")
    expect(page.get_by_label("Image URL")).to_be_visible()
    page.get_by_label("Image URL").fill(IMAGE)
    send(page, "What is this? [sim tokens=10 tps=100]")
    expect(last_reply(page)).to_have_attribute("data-status", "complete", timeout=10_000)
    assert sim.requests()[0]["image_url"] == IMAGE  # the reply's, not the title's asked after it
    expect(page.get_by_label("Image URL")).to_have_value("")


def test_a_dialect_that_cannot_take_an_image_hides_the_field_and_refuses_one(
    page: Page, sim: SimulatorProcess
) -> None:
    use_dialect(page, "text-delta")
    field = page.get_by_label("Image URL")
    expect(field).to_be_hidden()
    field.evaluate("(input, url) => { input.value = url; }", IMAGE)
    send(page, "What is this? [sim tokens=10 tps=100]")
    expect(page.get_by_text("cannot take an image")).to_be_visible()
    assert sim.requests() == []


def test_a_multi_turn_chat_works_on_a_single_prompt_dialect(page: Page, sim: SimulatorProcess) -> None:
    use_dialect(page, "muapi")
    send(page, "First question [sim tokens=8 tps=100]")
    expect(last_reply(page)).to_have_attribute("data-status", "complete", timeout=10_000)
    send(page, "Second question [sim tokens=8 tps=100]")
    expect(page.locator("[data-role=assistant][data-status=complete]")).to_have_count(2, timeout=10_000)
    second = next(r for r in sim.requests() if r["prompt"] == "Second question [sim tokens=8 tps=100]")
    assert second["body"]["prompt"].startswith("User: First question [sim tokens=8 tps=100]\n\nAssistant: ")


def test_a_reply_cut_off_by_the_token_limit_says_so_and_is_no_error(
    page: Page, sim: SimulatorProcess
) -> None:
    use_dialect(page, "openai-responses")
    send(page, "Go on [sim finish=length tokens=10 tps=100]")
    expect(last_reply(page)).to_have_attribute("data-status", "complete", timeout=10_000)
    expect(last_reply(page).locator(".status")).to_have_text("Cut off by the token limit")
