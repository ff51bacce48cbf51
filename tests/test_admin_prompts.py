"""Prompts in the admin: staff see every person's prompts, publish them and edit them."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.urls import reverse

from chat.models import Prompt
from tests.admin_data import FAST_HASHERS, make_user

pytestmark = pytest.mark.django_db

PROMPTS = reverse("admin:chat_prompt_changelist")
HOSTILE = '<img src=x onerror="window.pwned=1"><script>window.pwned=1</script>'


@pytest.fixture(autouse=True)
def _fast_hashers(settings) -> None:
    settings.PASSWORD_HASHERS = FAST_HASHERS


@pytest.fixture
def alice() -> User:
    return make_user("alice")


def test_staff_see_every_persons_prompts(admin_client, alice) -> None:
    mine = Prompt.objects.create(owner=alice, title="Alice's", text="a")
    bobs = Prompt.objects.create(owner=make_user("bob"), title="Bob's", text="b")
    response = admin_client.get(PROMPTS)
    assert {row.pk for row in response.context["cl"].result_list} == {mine.pk, bobs.pk}


def test_staff_publish_and_unpublish_prompts_with_the_actions(admin_client, alice) -> None:
    prompt = Prompt.objects.create(owner=alice, title="Good one", text="t")
    admin_client.post(PROMPTS, {"action": "publish", "_selected_action": [prompt.pk]})
    prompt.refresh_from_db()
    assert prompt.published
    admin_client.post(PROMPTS, {"action": "unpublish", "_selected_action": [prompt.pk]})
    prompt.refresh_from_db()
    assert not prompt.published


def test_staff_edit_a_prompt_and_publish_it_but_not_change_its_owner(admin_client, alice) -> None:
    prompt = Prompt.objects.create(owner=alice, title="Draft", text="t")
    url = reverse("admin:chat_prompt_change", args=[prompt.pk])
    staff = make_user("staffer", staff=True)
    admin_client.post(url, {"title": "Polished", "text": "better", "published": "on", "owner": staff.pk})
    prompt.refresh_from_db()
    assert (prompt.title, prompt.text, prompt.published, prompt.owner) == ("Polished", "better", True, alice)


def test_a_prompt_staff_add_in_the_admin_is_theirs(admin_client, admin_user) -> None:
    admin_client.post(reverse("admin:chat_prompt_add"), {"title": "House style", "text": "Be brief."})
    assert Prompt.objects.get(title="House style").owner == admin_user


def test_a_person_who_is_not_staff_cannot_reach_the_prompt_admin(client, alice) -> None:
    prompt = Prompt.objects.create(owner=alice, title="Mine", text="t")
    client.force_login(alice)
    for url in [PROMPTS, reverse("admin:chat_prompt_change", args=[prompt.pk])]:
        assert client.get(url).status_code == 302


def test_hostile_titles_and_texts_are_escaped_in_the_admin(admin_client, alice) -> None:
    prompt = Prompt.objects.create(owner=alice, title=HOSTILE, text=HOSTILE)
    for url in [PROMPTS, reverse("admin:chat_prompt_change", args=[prompt.pk])]:
        content = admin_client.get(url).content.decode()
        assert "<img src=x" not in content
        assert "<script>window.pwned" not in content
