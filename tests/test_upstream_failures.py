"""Every dialect and every upstream failure, over real loopback HTTP against the simulator."""

from __future__ import annotations

import email.utils
import math
import time
from dataclasses import dataclass, field

import pytest

from chat.providers.base import Turn
from chat.providers.config import get_providers
from chat.providers.events import Event, Finished, UpstreamError, Usage
from chat.upstream import backoff_delay, retry_after_seconds, stream_events
from tests.servers import SimulatorProcess, wait_until
from tests.streams import SIM_MODELS, sim_providers, text_of

DIALECTS = list(SIM_MODELS)
FAST = "tokens=12 tps=400"


@dataclass
class Outcome:
    events: list[Event] = field(default_factory=list)
    error: UpstreamError | None = None
    retries: list[tuple[int, float, str]] = field(default_factory=list)

    @property
    def text(self) -> str:
        return text_of(self.events)


@pytest.fixture(autouse=True)
def _providers(providers_file, settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIM_KEY", "sk-sim")
    providers_file(sim_providers())
    settings.CHAT_MAX_RETRY_WAIT = 2.0
    settings.CHAT_READ_TIMEOUT = 5.0


async def stream(
    dialect: str, prompt: str, *, turns: list[Turn] | None = None, system_prompt: str = ""
) -> Outcome:
    """Everything one reply yields, stopping at its error like the runner does."""
    outcome = Outcome()

    async def on_retry(attempt: int, delay: float, reason: str) -> None:
        outcome.retries.append((attempt, delay, reason))

    provider = get_providers()[dialect]
    turns = turns or [Turn("user", prompt)]
    try:
        async for event in stream_events(
            provider, SIM_MODELS.get(dialect, "demo-1"), turns, system_prompt, on_retry=on_retry
        ):
            outcome.events.append(event)
    except UpstreamError as exc:
        outcome.error = exc
    return outcome


# Every dialect streams


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_each_dialect_streams_the_whole_reply_with_its_key_where_the_vendor_wants_it(
    dialect: str, sim: SimulatorProcess
) -> None:
    outcome = await stream(dialect, f"Hello [sim {FAST}]")
    record = sim.last()
    assert outcome.error is None
    assert outcome.text == record["text"] != ""
    assert Finished("stop") in outcome.events
    assert record["dialect"] == dialect
    assert record["key_header"] == ("x-api-key" if dialect == "muapi" else "authorization")


@pytest.mark.parametrize("dialect", ["openai-chat", "openai-responses", "muapi"])
async def test_usage_comes_from_the_upstream(dialect: str, sim: SimulatorProcess) -> None:
    outcome = await stream(dialect, f"Count [sim {FAST}]")
    usage = [e for e in outcome.events if isinstance(e, Usage)]
    assert usage[-1].output_tokens == math.ceil(len(sim.last()["text"]) / 4)


async def test_a_system_prompt_and_an_image_reach_each_dialect_in_its_own_shape(
    sim: SimulatorProcess,
) -> None:
    image = "https://example.com/cat.png"
    turns = [Turn("user", f"Look [sim {FAST}]", image)]
    bodies = {}
    for dialect in ["openai-chat", "openai-responses", "muapi"]:
        assert (await stream(dialect, "", turns=turns, system_prompt="Be terse.")).error is None
        assert sim.last()["image_url"] == image
        bodies[dialect] = sim.last()["body"]
    assert bodies["openai-chat"]["messages"][0] == {"role": "system", "content": "Be terse."}
    assert bodies["openai-responses"]["instructions"] == "Be terse."
    assert bodies["muapi"]["system_prompt"] == "Be terse."
    await stream("text-delta", f"Hi [sim {FAST}]", system_prompt="Be terse.")
    assert sim.last()["body"]["prompt"].startswith("System: Be terse.\n\nUser: Hi")


@pytest.mark.parametrize("dialect", ["muapi", "text-delta"])
async def test_single_prompt_dialects_get_the_history_and_only_the_latest_message_steers(
    dialect: str, sim: SimulatorProcess
) -> None:
    turns = [
        Turn("user", "First [sim fail=error]"),
        Turn("assistant", "An earlier answer."),
        Turn("user", f"Second [sim {FAST}]"),
    ]
    outcome = await stream(dialect, "", turns=turns)
    prompt = sim.last()["body"]["prompt"]
    assert outcome.error is None
    assert "User: First [sim fail=error]\n\nAssistant: An earlier answer.\n\nUser: Second" in prompt
    assert sim.last()["prompt"] == f"Second [sim {FAST}]"


# Failures before the stream


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_an_http_error_carries_the_providers_own_message_and_a_4xx_is_not_retried(
    dialect: str, sim: SimulatorProcess
) -> None:
    outcome = await stream(dialect, "[sim fail=status status=400]")
    assert outcome.error is not None
    assert outcome.error.message == "the upstream answered 400: The demo model is overloaded."
    assert len(sim.requests()) == 1


@pytest.mark.parametrize("status", [401, 403, 404, 422])
async def test_other_client_errors_are_never_retried(status: int, sim: SimulatorProcess) -> None:
    outcome = await stream("openai-chat", f"[sim fail=status status={status} times=1 retry_after=0]")
    assert outcome.error is not None and outcome.retries == []
    assert len(sim.requests()) == 1


@pytest.mark.parametrize("status", [408, 409, 429, 500, 502, 503])
async def test_retryable_statuses_are_retried_and_the_reply_then_streams(
    status: int, sim: SimulatorProcess
) -> None:
    outcome = await stream("openai-chat", f"[sim fail=status status={status} times=1 retry_after=0 {FAST}]")
    assert outcome.error is None
    assert [(attempt, delay) for attempt, delay, _ in outcome.retries] == [(1, 0.0)]
    assert f"answered {status}" in outcome.retries[0][2]
    assert [r["outcome"] for r in sim.requests()] == [f"status {status}", "complete"]


def test_backoff_grows_exponentially_with_full_jitter_under_the_cap(settings) -> None:
    settings.CHAT_MAX_RETRY_WAIT = 3.0
    for attempt, cap in [(1, 1.0), (2, 2.0), (3, 3.0), (6, 3.0)]:
        delays = [backoff_delay(attempt, None) for _ in range(200)]
        assert all(0 <= delay <= cap for delay in delays)
        assert max(delays) > 0.8 * cap and len(set(delays)) > 100


def test_retry_after_is_read_as_seconds_or_an_http_date() -> None:
    assert retry_after_seconds("2") == 2.0
    assert 28 < retry_after_seconds(email.utils.formatdate(time.time() + 30, usegmt=True)) <= 30
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
    assert retry_after_seconds("soon") is None


async def test_attempts_are_bounded(sim: SimulatorProcess, settings) -> None:
    settings.CHAT_MAX_ATTEMPTS = 3
    outcome = await stream("muapi", "[sim fail=status status=503 retry_after=0]")
    assert outcome.error is not None and "answered 503" in outcome.error.message
    assert len(outcome.retries) == 2
    assert len(sim.requests()) == 3


async def test_retry_after_in_seconds_is_waited_for(sim: SimulatorProcess) -> None:
    outcome = await stream("openai-chat", f"[sim fail=status status=429 times=1 retry_after=1 {FAST}]")
    first, second = sim.requests()
    assert outcome.error is None
    assert outcome.retries[0][1] == 1.0
    assert second["started_at"] - first["started_at"] >= 0.95


async def test_retry_after_as_an_http_date_is_read_from_the_real_header(sim: SimulatorProcess) -> None:
    past = "Wed, 21 Oct 2015 07:28:00 GMT"
    outcome = await stream("openai-chat", f"[sim fail=status status=503 times=1 retry_after='{past}' {FAST}]")
    assert outcome.error is None
    assert outcome.retries[0][1] == 0.0  # a date already past; without the header it would be jittered


async def test_a_retry_after_longer_than_the_limit_fails_now_instead_of_retrying_early(
    sim: SimulatorProcess, settings
) -> None:
    settings.CHAT_MAX_RETRY_WAIT = 1.0
    outcome = await stream("openai-chat", "[sim fail=status status=429 retry_after=30]")
    assert outcome.error is not None and "asked to wait 30 s" in outcome.error.message
    assert outcome.retries == []
    assert len(sim.requests()) == 1


async def test_connect_errors_are_retried_with_a_bounded_jittered_backoff(settings) -> None:
    settings.CHAT_MAX_ATTEMPTS, settings.CHAT_MAX_RETRY_WAIT = 4, 0.2
    outcome = await stream("nowhere", "Hi")
    assert outcome.error is not None and "could not connect" in outcome.error.message
    assert [attempt for attempt, _, _ in outcome.retries] == [1, 2, 3]
    assert all(0 <= delay <= 0.2 for _, delay, _ in outcome.retries)


async def test_a_200_with_a_json_error_body_is_an_error_with_its_message(sim: SimulatorProcess) -> None:
    outcome = await stream("openai-chat", "[sim fail=status status=200]")
    assert outcome.error is not None
    assert outcome.error.message == "The demo model is overloaded."


# Failures mid-stream: an error, the partial text kept, never retried


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_an_error_event_mid_stream_is_an_error_after_the_partial_text(
    dialect: str, sim: SimulatorProcess
) -> None:
    outcome = await stream(dialect, f"[sim fail=error after=5 {FAST}]")
    assert outcome.error is not None and outcome.error.message == "The demo model failed mid-stream."
    assert outcome.text == sim.last()["text"] != ""
    assert len(sim.requests()) == 1


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_a_chunk_that_is_not_json_is_an_error_never_skipped(
    dialect: str, sim: SimulatorProcess
) -> None:
    outcome = await stream(dialect, f"[sim fail=corrupt after=3 {FAST}]")
    assert outcome.error is not None and "not valid JSON" in outcome.error.message
    assert outcome.text == sim.last()["text"][: len(outcome.text)] != ""


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_a_stream_without_its_end_signal_ended_early(dialect: str, sim: SimulatorProcess) -> None:
    outcome = await stream(dialect, f"[sim fail=truncate after=5 {FAST}]")
    assert outcome.error is not None and outcome.error.message == "the stream ended early"
    assert outcome.text == sim.last()["text"] != ""
    assert not any(isinstance(e, Finished) for e in outcome.events)


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_a_dropped_connection_mid_stream_is_an_error_after_the_partial_text(
    dialect: str, sim: SimulatorProcess
) -> None:
    outcome = await stream(dialect, f"[sim fail=disconnect after=5 {FAST}]")
    assert outcome.error is not None and "connection to the upstream dropped" in outcome.error.message
    assert outcome.text == sim.last()["text"] != ""
    assert len(sim.requests()) == 1


async def test_a_stall_ends_the_request_after_the_read_timeout(sim: SimulatorProcess, settings) -> None:
    settings.CHAT_READ_TIMEOUT = 0.5
    started = time.monotonic()
    outcome = await stream("openai-responses", f"[sim fail=stall after=3 {FAST}]")
    assert outcome.error is not None and outcome.error.message == "the upstream sent nothing for 0.5 s"
    assert 0.5 <= time.monotonic() - started < 2
    assert outcome.text == sim.last()["text"] != ""
    assert wait_until(lambda: sim.last()["client_closed_at"])  # the app hung up


async def test_a_first_token_slower_than_the_read_timeout_is_a_stall_and_not_retried(
    sim: SimulatorProcess, settings
) -> None:
    settings.CHAT_READ_TIMEOUT = 0.5
    outcome = await stream("text-delta", "[sim first_token_delay=3]")
    assert outcome.error is not None and "sent nothing for 0.5 s" in outcome.error.message
    assert len(sim.requests()) == 1


async def test_keep_alive_comments_hold_a_slow_first_token_within_the_read_timeout(
    sim: SimulatorProcess, settings
) -> None:
    settings.CHAT_READ_TIMEOUT = 0.5
    outcome = await stream("openai-chat", f"[sim first_token_delay=1.2 keepalive=0.2 {FAST}]")
    assert outcome.error is None
    assert outcome.text == sim.last()["text"] != ""


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_the_token_limit_is_a_finish_reason_not_an_error(dialect: str, sim: SimulatorProcess) -> None:
    outcome = await stream(dialect, f"[sim finish=length {FAST}]")
    assert outcome.error is None
    assert Finished("length") in outcome.events


@pytest.mark.parametrize("fail", ["fail=status status=401", f"fail=error after=3 {FAST}"])
async def test_a_key_the_upstream_echoes_in_its_error_is_cut_out(
    monkeypatch: pytest.MonkeyPatch, fail: str
) -> None:
    key = "sk-planted-0123456789abcdef"
    monkeypatch.setenv("SIM_KEY", key)
    outcome = await stream("openai-chat", f'[sim {fail} message="Incorrect API key provided: {key}."]')

    assert outcome.error is not None
    assert key not in outcome.error.message and key not in str(outcome.error)
    assert "Incorrect API key provided: [the API key]." in outcome.error.message
