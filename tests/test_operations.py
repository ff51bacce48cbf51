"""For whoever runs it: configuration refused at start, health, readiness, metrics, restarts."""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys

import pytest
from asgiref.sync import sync_to_async
from channels.layers import channel_layers
from django.contrib.auth.models import User
from django.core.management import call_command
from django.urls import reverse

from chat import configuration, health
from chat.metrics import CollectorPauses
from chat.models import Conversation
from tests.servers import ROOT, SimulatorProcess, free_port

PROVIDER = '[[providers]]\nname = "p"\ndialect = "openai-chat"\nbase_url = "https://p.example/v1"\n'


def errors(settings, tmp_path, text: str | None) -> list[str]:
    path = tmp_path / "providers.toml"
    if text is not None:
        path.write_text(text)
    settings.CHAT_PROVIDERS_FILE = str(path)
    return [message.msg for message in configuration.check_providers()]


@pytest.mark.parametrize(
    ("text", "says"),
    [
        (None, "providers.toml: there is no such file."),
        (
            PROVIDER + 'models = ["m"]\nname = "again"\n',
            "not valid TOML: Cannot overwrite a value (at line 6",
        ),
        (
            PROVIDER.replace("openai-chat", "nope") + 'models = ["m"]',
            "unknown dialect 'nope'; known: muapi, openai-chat, openai-responses, text-delta",
        ),
        (PROVIDER + "models = 5", "models must be a list"),
        (PROVIDER + 'models = ["m"]\n' + PROVIDER + 'models = ["m"]', "provider 'p' is listed twice"),
        (PROVIDER + 'models = [{ name = "m", input_price = -0.3, output_price = 1 }]', "0 or more, not -0.3"),
    ],
    ids=["missing", "toml", "dialect", "mistyped", "duplicate", "negative-price"],
)
def test_a_bad_providers_file_is_an_error_of_the_checks_that_names_what_is_wrong(
    settings, tmp_path, text: str | None, says: str
) -> None:
    (message,) = errors(settings, tmp_path, text)
    assert message.startswith("CHAT_PROVIDERS_FILE=") and says in message


def test_an_unset_api_key_variable_is_a_warning_not_an_error(settings, tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("NO_SUCH_KEY_VARIABLE", raising=False)
    path = tmp_path / "providers.toml"
    path.write_text(PROVIDER + 'api_key_env = "NO_SUCH_KEY_VARIABLE"\nmodels = ["m"]')
    settings.CHAT_PROVIDERS_FILE = str(path)
    (message,) = configuration.check_providers()
    assert message.level == 30 and "NO_SUCH_KEY_VARIABLE, which is not set" in message.msg


def test_services_that_do_not_answer_are_named_with_the_password_masked(settings, monkeypatch) -> None:
    closed = free_port()
    settings.REDIS_URL = f"redis://:hunter2@127.0.0.1:{closed}/0"
    monkeypatch.setattr(configuration, "SERVICE_TIMEOUT", 1.0)
    (message,) = configuration.check_services(databases=["default"])
    assert message.msg.startswith(f"REDIS_URL=redis://:***@127.0.0.1:{closed}/0: Redis did not answer")
    assert "hunter2" not in message.msg


def test_healthz_says_the_process_is_alive_to_anyone(client) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "alive"}


@pytest.mark.django_db
def test_readyz_is_ready_when_the_database_and_the_channel_layer_answer(client) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ready", "database": "ok", "channel_layer": "ok"}


@pytest.mark.django_db
def test_readyz_is_not_ready_with_the_database_down(client, monkeypatch) -> None:
    def down() -> bool:
        raise OSError("connection refused")

    monkeypatch.setattr(health, "database_answers", down)
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json() == {"status": "not ready", "database": "unavailable", "channel_layer": "ok"}


@pytest.mark.django_db
def test_readyz_is_not_ready_with_the_channel_layer_down_and_says_nothing_of_where_it_is(
    client, settings, monkeypatch
) -> None:
    closed = free_port()
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [f"redis://127.0.0.1:{closed}/0"]},
        }
    }
    monkeypatch.setattr(channel_layers, "backends", {})
    try:
        response = client.get("/readyz")
    finally:
        channel_layers.backends = {}
    assert response.status_code == 503
    assert response.json() == {"status": "not ready", "database": "ok", "channel_layer": "unavailable"}
    assert str(closed) not in response.content.decode()


@pytest.mark.django_db
def test_metrics_are_for_staff_or_the_token_only(client, settings) -> None:
    settings.CHAT_METRICS_TOKEN = "metrics-token-0123456789"
    assert client.get("/metrics").status_code == 403
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 403
    client.force_login(User.objects.create_user("alice"))
    assert client.get("/metrics").status_code == 403
    client.logout()
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer metrics-token-0123456789").status_code == 200
    client.force_login(User.objects.create_user("root", is_staff=True))
    page = client.get("/metrics")
    assert page.status_code == 200 and "chat_replies_active" in page.content.decode()


def sample(text: str, name: str, **labels: str) -> float:
    """One sample of a metric from /metrics' text, 0 when it is not there yet."""
    wanted = ",".join(f'{key}="{value}"' for key, value in labels.items())
    for line in text.splitlines():
        head, _, value = line.rpartition(" ")
        if head == (f"{name}{{{wanted}}}" if labels else name):
            return float(value)
    return 0.0


@pytest.mark.django_db(transaction=True)
async def test_the_metrics_move_when_a_reply_streams(sim: SimulatorProcess, settings) -> None:
    from channels.routing import URLRouter
    from channels.testing import WebsocketCommunicator
    from django.test import Client

    from chat.routing import websocket_urlpatterns

    settings.CHAT_METRICS_TOKEN = "metrics-token-0123456789"
    scraper = Client(HTTP_AUTHORIZATION="Bearer metrics-token-0123456789")

    async def scrape() -> str:
        return (await sync_to_async(scraper.get)("/metrics")).content.decode()

    before = await scrape()
    alice = await sync_to_async(User.objects.create_user)("alice")
    conversation = await Conversation.objects.acreate(owner=alice, provider="demo", model="demo-1")
    page = WebsocketCommunicator(URLRouter(websocket_urlpatterns), f"/ws/conversations/{conversation.pk}/")
    page.scope["user"] = alice
    await page.connect()
    await page.send_to(json.dumps({"message": "Count me [sim tokens=20 tps=200]", "client_id": "m1"}))
    while 'data-role="assistant" data-status="complete"' not in await page.receive_from(10):
        pass
    after = await scrape()
    await page.disconnect()

    labels = {"model": "demo-1", "provider": "demo"}
    assert (
        sample(after, "chat_replies_started_total", **labels)
        == sample(before, "chat_replies_started_total", **labels) + 1
    )
    ended = {"model": "demo-1", "provider": "demo", "status": "complete"}
    assert (
        sample(after, "chat_replies_ended_total", **ended)
        == sample(before, "chat_replies_ended_total", **ended) + 1
    )
    assert (
        sample(after, "chat_text_pieces_relayed_total")
        >= sample(before, "chat_text_pieces_relayed_total") + 20
    )
    count = "chat_first_token_seconds_count"
    assert sample(after, count, **labels) == sample(before, count, **labels) + 1
    # The send's one trip to the database thread, timed (chat.database).
    for metric in ("chat_database_wait_seconds_count", "chat_database_trip_seconds_count"):
        assert (
            sample(after, metric, trip="_checked_write") == sample(before, metric, trip="_checked_write") + 1
        )


@pytest.mark.django_db
def test_a_restart_with_the_superuser_variables_keeps_the_password_and_so_the_sessions(
    client, monkeypatch
) -> None:
    monkeypatch.setenv("DJANGO_SUPERUSER_USERNAME", "root")
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", "a-long-root-password")
    call_command("ensure_login", stdout=open("/dev/null", "w"))  # noqa: SIM115
    root = User.objects.get(username="root")
    hashed = root.password
    client.force_login(root)

    call_command("ensure_login", stdout=open("/dev/null", "w"))  # noqa: SIM115

    assert User.objects.get(username="root").password == hashed
    assert client.get(reverse("chat:home")).status_code == 302  # to a conversation, not the login
    assert "login" not in client.get(reverse("chat:home"))["Location"]


def test_json_logs_are_one_object_a_line_with_the_ids_and_never_the_text(tmp_path) -> None:
    """``CHAT_LOG_FORMAT=json``, as a worker would log a reply that failed."""
    code = (
        "import logging\n"
        "try:\n"
        "    raise ValueError('boom')\n"
        "except ValueError:\n"
        "    logging.getLogger('chat.generation').exception("
        "'reply %s failed', 7, extra={'reply': 7, 'conversation': 3})\n"
    )
    env = {**os.environ, "CHAT_LOG_FORMAT": "json", "CHAT_VAR_DIR": str(tmp_path)}
    for service in ("REDIS_URL", "DATABASE_URL"):
        env.pop(service, None)
    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip

    (line,) = [line for line in result.stderr.splitlines() if line.startswith("{")]
    entry = json.loads(line)
    assert entry["level"] == "ERROR" and entry["logger"] == "chat.generation"
    assert entry["message"] == "reply 7 failed"
    assert entry["reply"] == 7 and entry["conversation"] == 3
    assert "ValueError: boom" in entry["exception"] and "time" in entry


def test_an_unknown_log_format_is_refused_by_name() -> None:
    env = {**os.environ, "CHAT_LOG_FORMAT": "xml"}
    result = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    assert "Configuration error: CHAT_LOG_FORMAT='xml': expected text or json" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_collectors_pauses_are_timed_by_generation() -> None:
    """Each pass lands in its generation's histogram: counted, summed, and in the bucket
    of its length, read only at scrape time (``chat.metrics.CollectorPauses``)."""
    pauses = CollectorPauses()
    gc.callbacks.append(pauses._callback)
    try:
        gc.collect()  # a full pass
        gc.collect()
    finally:
        gc.callbacks.remove(pauses._callback)
    [family] = pauses.collect()
    samples = {(s.name, s.labels["generation"], s.labels.get("le")): s.value for s in family.samples}
    assert samples[("chat_gc_pause_seconds_count", "2", None)] == 2
    assert samples[("chat_gc_pause_seconds_bucket", "2", "+Inf")] == 2
    assert 0 < samples[("chat_gc_pause_seconds_sum", "2", None)] < 10
    # Cumulative buckets: never fewer under a larger bound, and a full pass of this small
    # heap takes under a second.
    bounds = [samples[("chat_gc_pause_seconds_bucket", "2", str(b))] for b in CollectorPauses.BUCKETS]
    assert bounds == sorted(bounds) and bounds[-1] == 2
