"""Two daphne workers on Redis and PostgreSQL: a reply belongs to the worker that runs
it, and every other worker can stop it, resume it on a page, or end it after a crash."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect

from chat.simulator.script import plan_for, reply_text
from tests.frames import only_grew, read
from tests.scaleout import pages
from tests.scaleout.clients import Session, log_in, upstream_request
from tests.scaleout.conftest import Cluster, add_session
from tests.scaleout.pages import body, send
from tests.servers import AppServer, SimulatorProcess, wait_until

pytestmark = pytest.mark.scaleout


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context()
    pages.record(context)
    yield context.new_page()
    context.close()


def open_new_conversation(page: Page, worker: AppServer) -> tuple[Session, int]:
    session = log_in(worker.url)
    add_session(page.context, session, worker.url)
    conversation = session.new_conversation(worker.url)
    page.goto(f"{worker.url}/conversations/{conversation}/")
    pages.wait_for_socket(page)
    return session, conversation


def text_sent_before(record: dict, moment: float) -> str:
    """What the simulator had sent of a reply by ``moment`` (its clock is ours)."""
    tokens = reply_text(record["prompt"], plan_for(record["prompt"], 0))
    return "".join(tokens[: sum(1 for sent in record["token_times"] if sent < moment)])


def test_stop_sent_through_another_worker_aborts_the_upstream(
    cluster: Cluster, sim: SimulatorProcess, page: Page
) -> None:
    # Worker A checks the database for a Stop only every 10 s: a Stop seen sooner came
    # through the channel layer.
    (worker_a,) = cluster.start(1, CHAT_PERSIST_INTERVAL="10")
    (worker_b,) = cluster.start(1)
    session, _ = open_new_conversation(page, worker_a)
    message = "A long answer [sim tokens=2000 tps=30]"
    reply_id = send(page, message)
    wait_until(lambda: len(body(page, reply_id)) > 40)

    pressed = time.time()
    assert session.post(worker_b.url, f"/replies/{reply_id}/stop/").status_code == 204

    record = wait_until(lambda: (r := upstream_request(sim, message))["client_closed_at"] and r, timeout=5)
    assert record["client_closed_at"] - pressed < 1
    expect(page.locator(f"#message-{reply_id}")).to_have_attribute("data-status", "cancelled")
    saved = cluster.db.reply(reply_id)
    assert saved["status"] == "cancelled"
    assert read(saved["content"], reply_id) == body(page, reply_id)
    assert record["text"].startswith(saved["content"])
    labels = pages.stop_labels(page)
    assert labels[-2:] == ["Stopping...", "Stop"]


def test_a_reload_routed_to_another_worker_resumes_the_reply_without_gap_or_repeat(
    cluster: Cluster, sim: SimulatorProcess, page: Page
) -> None:
    worker_a, worker_b = cluster.start(2)
    _, conversation = open_new_conversation(page, worker_a)
    message = "Resume me elsewhere [sim tokens=240 tps=40]"
    reply_id = send(page, message)
    wait_until(lambda: len(body(page, reply_id)) > 80)
    shown_earlier = body(page, reply_id)
    time.sleep(1.5)
    shown_on_a = body(page, reply_id)

    page.goto(f"{worker_b.url}/conversations/{conversation}/")
    expect(page.locator(f"#message-{reply_id}")).to_have_attribute("data-status", "complete", timeout=15_000)

    upstream = upstream_request(sim, message)["text"]
    bodies = pages.bodies(page)
    assert only_grew(bodies, upstream, reply_id)
    assert len({len(text) for text in bodies}) >= 3  # it went on growing, live
    # First the text the page was served, persisted about a second before the reload;
    # then the snapshot from worker A, with all the text so far.
    assert len(bodies[0]) >= len(shown_earlier)
    assert len(bodies[1]) >= len(shown_on_a)
    assert cluster.db.reply(reply_id)["content"] == upstream


def test_a_worker_killed_mid_reply_leaves_it_interrupted_with_its_text_and_a_retry(
    cluster: Cluster, sim: SimulatorProcess, page: Page
) -> None:
    (worker_a,) = cluster.start(1)
    (worker_b,) = cluster.start(1, CHAT_STALE_AFTER="3")
    _, conversation = open_new_conversation(page, worker_a)
    message = "Crash while writing [sim tokens=400 tps=40]"
    reply_id = send(page, message)
    wait_until(lambda: len(body(page, reply_id)) > 120)

    worker_a.process.send_signal(signal.SIGKILL)
    killed = time.time()
    worker_a.process.wait(5)

    page.goto(f"{worker_b.url}/conversations/{conversation}/")
    reply = page.locator(f"#message-{reply_id}")
    expect(reply).to_have_attribute("data-status", "interrupted", timeout=15_000)
    ended = time.time()
    assert ended - killed < 3 + 1.5 + 3  # stale after 3 s, swept every 1.5 s, and slack

    saved = cluster.db.reply(reply_id)
    record = upstream_request(sim, message)
    assert saved["status"] == "interrupted"
    assert record["text"].startswith(saved["content"])
    assert len(saved["content"]) >= len(text_sent_before(record, killed - 1.5))
    assert body(page, reply_id) == read(saved["content"], reply_id)

    reply.get_by_role("button", name="Retry").click()
    retried = page.locator("[data-role=assistant]").last
    expect(retried).not_to_have_id(f"message-{reply_id}")
    wait_until(lambda: len(retried.locator(".body").text_content()) > 20)
    expect(page.locator("[data-role=user] .body").last).to_have_text(message)
