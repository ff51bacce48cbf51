"""Sampling parameters per conversation: checked, saved, offered per dialect, sent upstream."""

from __future__ import annotations

import json
import math

import pytest
from django.urls import reverse

from chat.models import Conversation, Message
from chat.providers.config import ProviderConfigError, parse_providers
from chat.providers.parameters import PARAMETERS
from tests.servers import SimulatorProcess
from tests.test_consumers import connect, frames_until, make_user

TWO_DIALECTS = """
[[providers]]
name = "chat"
dialect = "openai-chat"
base_url = "{sim}/v1"
models = ["demo-1"]
temperature = 0.4

[[providers]]
name = "generic"
dialect = "text-delta"
base_url = "{sim}/v1"
models = ["g"]
"""


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("temperature", "hot"),
        ("temperature", "2.5"),
        ("temperature", "-0.1"),
        ("temperature", "nan"),
        ("temperature", True),
        ("top_p", "1.01"),
        ("max_tokens", "1.5"),
        ("max_tokens", "0"),
        ("max_tokens", math.inf),
    ],
)
def test_a_bad_value_is_refused_with_the_rule_it_broke(name, value) -> None:
    parameter = PARAMETERS[name]
    with pytest.raises(ValueError, match=f"^{parameter.label} must be"):
        parameter.check(value)


def test_good_values_are_read_as_their_kind() -> None:
    assert PARAMETERS["temperature"].check(" 0.7 ") == 0.7
    assert PARAMETERS["max_tokens"].check("500") == 500
    assert PARAMETERS["max_tokens"].check(500.0) == 500
    assert isinstance(PARAMETERS["max_tokens"].check(500.0), int)


def test_the_providers_file_sets_defaults_and_refuses_a_field_its_dialect_lacks() -> None:
    head = '[[providers]]\nname = "g"\ndialect = "text-delta"\nbase_url = "https://g.example"\n'
    head += 'models = ["m"]\n'
    (provider,) = parse_providers(head + "temperature = 0.3\nmax_tokens = 64\n").values()
    assert provider.defaults == {"temperature": 0.3, "max_tokens": 64}
    assert "temperature" not in provider.options
    with pytest.raises(ProviderConfigError, match="provider 'g': its dialect 'text-delta' has no top_p"):
        parse_providers(head + "top_p = 0.9\n")
    with pytest.raises(ProviderConfigError, match="provider 'g': temperature: Temperature must be a number"):
        parse_providers(head + "temperature = 9\n")


@pytest.fixture
def alice(django_user_model):
    return django_user_model.objects.create_user("alice", password="x" * 12)


def post_settings(client, conversation: Conversation, model: str, **values: str):
    data = {"model": model, "system_prompt": conversation.system_prompt, **values}
    return client.post(reverse("chat:settings", args=[conversation.pk]), data, follow=True)


@pytest.mark.django_db
def test_settings_save_parameters_and_an_empty_field_means_the_default(client, alice, providers_file) -> None:
    providers_file(TWO_DIALECTS)
    client.force_login(alice)
    conversation = Conversation.objects.create(owner=alice, provider="chat", model="demo-1")
    post_settings(client, conversation, "chat/demo-1", temperature="0.2", max_tokens="", top_p="0.9")
    conversation.refresh_from_db()
    assert conversation.parameters == {"temperature": 0.2, "top_p": 0.9}


@pytest.mark.django_db
def test_a_bad_parameter_is_refused_clearly_and_changes_nothing(client, alice, providers_file) -> None:
    providers_file(TWO_DIALECTS)
    client.force_login(alice)
    conversation = Conversation.objects.create(
        owner=alice, provider="chat", model="demo-1", parameters={"temperature": 0.2}
    )
    response = client.post(
        reverse("chat:settings", args=[conversation.pk]),
        {"model": "chat/demo-1", "system_prompt": "New", "temperature": "7"},
        follow=True,
    )
    assert "Temperature must be a number from 0 to 2." in response.content.decode()
    conversation.refresh_from_db()
    assert (conversation.parameters, conversation.system_prompt) == ({"temperature": 0.2}, "")


@pytest.mark.django_db
def test_the_form_offers_only_what_the_dialect_takes_and_a_switch_drops_the_rest(
    client, alice, providers_file
) -> None:
    providers_file(TWO_DIALECTS)
    client.force_login(alice)
    conversation = Conversation.objects.create(owner=alice, provider="chat", model="demo-1")
    page = client.get(reverse("chat:conversation", args=[conversation.pk])).content.decode()
    assert 'name="top_p"' in page and 'name="temperature"' in page
    assert 'placeholder="0.4"' in page  # the provider's default

    post_settings(client, conversation, "generic/g", temperature="0.5", top_p="0.9")
    conversation.refresh_from_db()
    assert conversation.parameters == {"temperature": 0.5}
    page = client.get(reverse("chat:conversation", args=[conversation.pk])).content.decode()
    assert 'name="top_p"' not in page and 'name="max_tokens"' in page


@pytest.mark.django_db(transaction=True)
async def test_a_reply_is_asked_with_the_conversations_parameters_over_the_defaults(
    sim: SimulatorProcess, providers_file
) -> None:
    providers_file(TWO_DIALECTS)
    alice = await make_user("alice")
    conversation = await Conversation.objects.acreate(
        owner=alice, provider="chat", model="demo-1", parameters={"max_tokens": 12, "top_p": 0.5}
    )
    _, communicator = await connect(alice, conversation.pk)
    await communicator.send_to(json.dumps({"message": "Hi [sim tokens=200 tps=400]", "client_id": "p1"}))
    frames = await frames_until(communicator, r'data-role="assistant" data-status="complete"')
    await communicator.disconnect()

    body = sim.last()["body"]
    assert (body["temperature"], body["max_tokens"], body["top_p"]) == (0.4, 12, 0.5)
    reply = await Message.objects.aget(conversation=conversation, role="assistant")
    assert reply.parameters == {"temperature": 0.4, "max_tokens": 12, "top_p": 0.5}
    # The simulator keeps to the limit as a model would: the reply is cut off there.
    assert reply.finish_reason == "length"
    assert len(sim.last()["token_times"]) == 12
    assert "temperature 0.4 · max_tokens 12 · top_p 0.5" in frames[-1]
