"""The prompt library: saving, editing and deleting prompts, the slash menu's list, isolation."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from chat import prompts
from chat.models import Prompt

pytestmark = pytest.mark.django_db

HOSTILE = '<img src=x onerror="window.pwned=1"><script>window.pwned=1</script>'
PROMPTS = reverse("chat:prompts")
MENU = reverse("chat:prompt_menu")


@pytest.fixture
def alice(django_user_model) -> User:
    return django_user_model.objects.create_user("alice", password="x" * 12)


@pytest.fixture
def bob(django_user_model) -> User:
    return django_user_model.objects.create_user("bob", password="x" * 12)


@pytest.fixture
def as_alice(client: Client, alice: User) -> Client:
    client.force_login(alice)
    return client


def menu_titles(client: Client, query: str = "") -> list[str]:
    return [choice["title"] for choice in client.get(MENU, {"q": query}).json()["prompts"]]


def test_a_person_saves_a_prompt_with_its_title_trimmed(as_alice, alice) -> None:
    response = as_alice.post(PROMPTS, {"title": "  Trip planner  ", "text": "Plan a trip to {{city}}."})
    assert response.status_code == 302
    prompt = Prompt.objects.get(owner=alice)
    assert (prompt.title, prompt.text) == ("Trip planner", "Plan a trip to {{city}}.")
    assert not prompt.published


def test_the_prompts_page_lists_only_the_persons_own_prompts_with_their_variables(
    as_alice, alice, bob
) -> None:
    Prompt.objects.create(owner=alice, title="Mine", text="Hello {{name}} from {{city}} and {{name}}")
    Prompt.objects.create(owner=bob, title="Bob's private", text="secret")
    Prompt.objects.create(owner=bob, title="Bob's published", text="shared", published=True)
    content = as_alice.get(PROMPTS).content.decode()
    assert "Mine" in content
    assert "Asks for: name, city" in content
    assert "Bob&#x27;s" not in content


@pytest.mark.parametrize(
    ("title", "text", "error"),
    [
        ("   ", "Some text", "Give the prompt a title."),
        ("x" * 121, "Some text", "That title is 121 characters; the limit is 120."),
        ("A title", "  \n ", "Write the prompt&#x27;s text."),
    ],
)
def test_a_bad_prompt_is_refused_with_a_clear_error_and_what_was_typed(as_alice, title, text, error) -> None:
    response = as_alice.post(PROMPTS, {"title": title, "text": text})
    content = response.content.decode()
    assert response.status_code == 200
    assert error in content
    assert 'role="alert"' in content
    assert Prompt.objects.count() == 0


def test_a_prompt_longer_than_a_message_may_be_is_refused(as_alice, settings) -> None:
    settings.CHAT_MAX_MESSAGE_CHARS = 50
    response = as_alice.post(PROMPTS, {"title": "Long", "text": "y" * 51})
    assert "That text is 51 characters; the limit is 50." in response.content.decode()
    assert Prompt.objects.count() == 0


def test_the_owner_edits_a_prompt_and_its_published_state_stays(as_alice, alice) -> None:
    prompt = Prompt.objects.create(owner=alice, title="Old", text="old text", published=True)
    response = as_alice.post(reverse("chat:edit_prompt", args=[prompt.pk]), {"title": " New ", "text": "new"})
    assert response.status_code == 302
    prompt.refresh_from_db()
    assert (prompt.title, prompt.text, prompt.published) == ("New", "new", True)


def test_an_edit_cannot_publish_a_prompt(as_alice, alice) -> None:
    prompt = Prompt.objects.create(owner=alice, title="Mine", text="text")
    edit = reverse("chat:edit_prompt", args=[prompt.pk])
    as_alice.post(edit, {"title": "Mine", "text": "t", "published": "on"})
    prompt.refresh_from_db()
    assert not prompt.published


def test_a_bad_edit_changes_nothing_and_says_why(as_alice, alice) -> None:
    prompt = Prompt.objects.create(owner=alice, title="Keep", text="kept")
    response = as_alice.post(reverse("chat:edit_prompt", args=[prompt.pk]), {"title": "", "text": "changed"})
    assert "Give the prompt a title." in response.content.decode()
    prompt.refresh_from_db()
    assert (prompt.title, prompt.text) == ("Keep", "kept")


def test_the_owner_deletes_a_prompt(as_alice, alice) -> None:
    prompt = Prompt.objects.create(owner=alice, title="Gone", text="soon")
    response = as_alice.post(reverse("chat:delete_prompt", args=[prompt.pk]))
    assert response.status_code == 302
    assert not Prompt.objects.filter(pk=prompt.pk).exists()


@pytest.mark.parametrize("name", ["chat:edit_prompt", "chat:delete_prompt"])
def test_another_persons_prompt_is_not_found_and_untouched(as_alice, bob, name) -> None:
    prompt = Prompt.objects.create(owner=bob, title="Bob's", text="bob-secret-7731", published=True)
    url = reverse(name, args=[prompt.pk])
    for response in (as_alice.get(url), as_alice.post(url, {"title": "Taken", "text": "over"})):
        assert response.status_code in {404, 405}
        assert b"bob-secret-7731" not in response.content
    prompt.refresh_from_db()
    assert (prompt.title, prompt.text) == ("Bob's", "bob-secret-7731")


@pytest.mark.parametrize("url", [PROMPTS, MENU])
def test_logged_out_the_prompt_pages_send_to_log_in(client, url) -> None:
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_the_menu_lists_own_and_published_prompts_never_anothers_unpublished(as_alice, alice, bob) -> None:
    Prompt.objects.create(owner=alice, title="Alice draft", text="a")
    Prompt.objects.create(owner=bob, title="Bob draft", text="b")
    Prompt.objects.create(owner=bob, title="Bob shared", text="c", published=True)
    assert menu_titles(as_alice) == ["Alice draft", "Bob shared"]


def test_the_menu_marks_published_prompts_as_shared_and_carries_their_text(as_alice, alice, bob) -> None:
    Prompt.objects.create(owner=alice, title="Mine", text="my {{x}}")
    Prompt.objects.create(owner=bob, title="Theirs", text="their text", published=True)
    choices = as_alice.get(MENU).json()["prompts"]
    assert [(c["title"], c["text"], c["shared"]) for c in choices] == [
        ("Mine", "my {{x}}", False),
        ("Theirs", "their text", True),
    ]


def test_the_menu_filters_by_title_ignoring_case(as_alice, alice) -> None:
    for title in ["Trip planner", "Code review", "Strip HTML"]:
        Prompt.objects.create(owner=alice, title=title, text="t")
    assert menu_titles(as_alice, "TRIP") == ["Strip HTML", "Trip planner"]


def test_the_menu_is_never_cached(as_alice) -> None:
    assert as_alice.get(MENU)["Cache-Control"] == "private, no-store"


def test_hostile_titles_and_texts_are_escaped_on_the_prompts_page(as_alice, alice) -> None:
    as_alice.post(PROMPTS, {"title": HOSTILE, "text": HOSTILE})
    prompt = Prompt.objects.get(owner=alice)
    for url in [PROMPTS, reverse("chat:edit_prompt", args=[prompt.pk])]:
        content = as_alice.get(url).content.decode()
        assert "<img src=x" not in content
        assert "<script>window.pwned" not in content
        assert "&lt;img src=x onerror=&quot;window.pwned=1&quot;&gt;" in content


def test_hostile_text_reaches_the_menu_as_json_strings_only(as_alice, alice) -> None:
    Prompt.objects.create(owner=alice, title=HOSTILE, text=HOSTILE)
    response = as_alice.get(MENU)
    assert response["Content-Type"] == "application/json"
    assert response.json()["prompts"][0]["title"] == HOSTILE


def test_variables_are_the_distinct_names_in_order() -> None:
    text = "From {{ city }} to {{country}}, {{city}} again; not {{two words}} nor {{}} nor {{é}}"
    assert prompts.variables(text) == ["city", "country"]


def test_the_menu_is_short(as_alice, alice) -> None:
    Prompt.objects.bulk_create(Prompt(owner=alice, title=f"P{i:02}", text="t") for i in range(25))
    assert len(menu_titles(as_alice)) == prompts.MENU_LENGTH
