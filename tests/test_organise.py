"""Pins, the archive and folders: each action, each refusal, and the sidebar they draw."""

from __future__ import annotations

import pytest
from django.urls import reverse, set_script_prefix

from chat import broadcast, organise, rendering, sidebar
from chat.models import Conversation, Folder

pytestmark = pytest.mark.django_db

HOSTILE = '<img src=x onerror="window.pwned=1"><script>window.pwned=1</script>'
HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def alice(django_user_model):
    return django_user_model.objects.create_user("alice", password="x" * 12)


@pytest.fixture
def told(monkeypatch) -> list[int]:
    """The people whose pages were told to redraw their sidebar."""
    calls: list[int] = []

    async def record(user_id: int) -> None:
        calls.append(user_id)

    monkeypatch.setattr(broadcast, "sidebar_changed", record)
    return calls


@pytest.fixture
def signed_in(client, alice):
    client.force_login(alice)
    return client


def chat(owner, title: str = "A chat", **fields) -> Conversation:
    return Conversation.objects.create(owner=owner, provider="demo", model="demo-1", title=title, **fields)


def page_of(conversation: Conversation) -> dict[str, str]:
    """The headers of an htmx request from ``conversation``'s page."""
    return {**HTMX, "HTTP_HX_CURRENT_URL": f"http://testserver/conversations/{conversation.pk}/"}


def test_pinning_puts_a_conversation_at_the_top_and_tells_every_page(signed_in, alice, told) -> None:
    older = chat(alice, "Older")
    chat(alice, "Newer")

    response = signed_in.post(reverse("chat:pin", args=[older.pk]), {"pinned": "1"}, **page_of(older))

    shown = sidebar.load(alice.pk)
    assert [c.title for c in shown.pinned] == ["Older"]
    assert [c.title for c in shown.recent] == ["Newer"]
    assert told == [alice.pk]
    html = response.content.decode()
    assert html.index(">Older<") < html.index(">Newer<")
    assert "Unpin chat" in html


def test_unpinning_returns_it_to_the_plain_list(signed_in, alice, told) -> None:
    conversation = chat(alice, pinned_at="2026-01-01T00:00Z")
    signed_in.post(reverse("chat:pin", args=[conversation.pk]), {"pinned": "0"}, **HTMX)
    shown = sidebar.load(alice.pk)
    assert (shown.pinned, [c.pk for c in shown.recent]) == ([], [conversation.pk])


def test_pinning_or_filing_does_not_make_a_conversation_newer(signed_in, alice, told) -> None:
    conversation = chat(alice)
    before = Conversation.objects.get(pk=conversation.pk).updated_at
    folder = organise.do_create_folder(alice.pk, "Work")
    signed_in.post(reverse("chat:pin", args=[conversation.pk]), {"pinned": "1"}, **HTMX)
    signed_in.post(reverse("chat:move", args=[conversation.pk]), {"folder": folder.pk}, **HTMX)
    assert Conversation.objects.get(pk=conversation.pk).updated_at == before


def test_too_many_pins_are_refused_with_a_clear_error(signed_in, alice, told) -> None:
    for n in range(sidebar.PINNED_LENGTH):
        chat(alice, f"Pinned {n}", pinned_at="2026-01-01T00:00Z")
    conversation = chat(alice, "One more")

    response = signed_in.post(reverse("chat:pin", args=[conversation.pk]), {"pinned": "1"}, **HTMX)

    assert f"At most {sidebar.PINNED_LENGTH} conversations can be pinned" in response.content.decode()
    assert 'role="alert"' in response.content.decode()
    assert Conversation.objects.get(pk=conversation.pk).pinned_at is None
    assert told == []


def test_archiving_hides_it_from_the_sidebar_but_not_from_search_or_its_url(signed_in, alice, told) -> None:
    conversation = chat(alice, "Tax return", pinned_at="2026-01-01T00:00Z")

    signed_in.post(reverse("chat:archive", args=[conversation.pk]), {"archived": "1"}, **HTMX)

    shown = sidebar.load(alice.pk)
    listed = [*shown.pinned, *(c for f in shown.folders for c in f.items), *shown.recent]
    assert conversation.pk not in [c.pk for c in listed]
    assert told == [alice.pk]
    found = signed_in.get(reverse("chat:search"), {"q": "tax"}).content.decode()
    assert 'Tax return <span class="tag">Archived</span>' in found
    assert signed_in.get(reverse("chat:conversation", args=[conversation.pk])).status_code == 200
    assert "Tax return" in signed_in.get(reverse("chat:archived")).content.decode()


def test_an_archived_conversation_is_no_longer_pinned(signed_in, alice, told) -> None:
    conversation = chat(alice, pinned_at="2026-01-01T00:00Z")
    signed_in.post(reverse("chat:archive", args=[conversation.pk]), {"archived": "1"}, **HTMX)
    assert Conversation.objects.get(pk=conversation.pk).pinned_at is None


def test_unarchiving_from_the_archived_page_returns_it_to_its_folder(signed_in, alice, told) -> None:
    folder = organise.do_create_folder(alice.pk, "Work")
    conversation = chat(alice, "Filed", folder=folder, archived_at="2026-01-01T00:00Z")

    response = signed_in.post(
        reverse("chat:archive", args=[conversation.pk]),
        {"archived": "0"},
        HTTP_REFERER="http://testserver/conversations/archived/",
    )

    assert response["Location"] == "http://testserver/conversations/archived/"
    assert [c.pk for c in sidebar.load(alice.pk).folders[0].items] == [conversation.pk]
    assert told == [alice.pk]


def test_the_archived_page_lists_only_archived_conversations_newest_first(signed_in, alice) -> None:
    chat(alice, "Kept")
    chat(alice, "First away", archived_at="2026-01-01T00:00Z")
    chat(alice, "Last away", archived_at="2026-02-01T00:00Z")
    html = signed_in.get(reverse("chat:archived")).content.decode()
    assert "Kept" not in html
    assert html.index("Last away") < html.index("First away")


def test_the_new_chat_button_does_not_reuse_an_archived_empty_conversation(signed_in, alice, sim) -> None:
    archived = chat(alice, archived_at="2026-01-01T00:00Z")
    response = signed_in.post(reverse("chat:new"))
    assert response["Location"] != reverse("chat:conversation", args=[archived.pk])


def test_a_folder_is_made_with_its_name_trimmed(signed_in, alice, told) -> None:
    response = signed_in.post(reverse("chat:new_folder"), {"name": "  Side   projects "}, **HTMX)
    assert list(Folder.objects.filter(owner=alice).values_list("name", flat=True)) == ["Side projects"]
    assert "<summary>Side projects</summary>" in response.content.decode()
    assert told == [alice.pk]


@pytest.mark.parametrize(
    ("name", "error"),
    [
        ("   ", "A folder needs a name."),
        ("x" * 61, "A folder name can be at most 60 characters."),
        ("WORK", "You already have a folder named “WORK”."),
    ],
)
def test_a_bad_folder_name_is_refused_with_a_clear_error(signed_in, alice, told, name, error) -> None:
    organise.do_create_folder(alice.pk, "Work")

    response = signed_in.post(reverse("chat:new_folder"), {"name": name}, **HTMX)

    assert error in response.content.decode()
    assert Folder.objects.filter(owner=alice).count() == 1
    assert told == []


def test_a_refused_folder_name_stays_in_the_box(signed_in, alice, told) -> None:
    organise.do_create_folder(alice.pk, "Work")
    response = signed_in.post(reverse("chat:new_folder"), {"name": "work"}, **HTMX)
    assert 'id="new-folder-name" name="name" value="work"' in response.content.decode()


def test_another_persons_folder_name_is_free_to_use(alice, django_user_model) -> None:
    bob = django_user_model.objects.create_user("bob", password="x" * 12)
    organise.do_create_folder(bob.pk, "Work")
    assert organise.do_create_folder(alice.pk, "work").name == "work"


def test_the_number_of_folders_is_limited(alice) -> None:
    Folder.objects.bulk_create(Folder(owner=alice, name=f"F{n}") for n in range(organise.FOLDER_LIMIT))
    with pytest.raises(organise.ChatError, match="the most there can be"):
        organise.do_create_folder(alice.pk, "One more")


def test_a_folder_is_renamed_and_may_change_only_its_case(signed_in, alice, told) -> None:
    folder = organise.do_create_folder(alice.pk, "work")
    signed_in.post(reverse("chat:rename_folder", args=[folder.pk]), {"name": "Work"}, **HTMX)
    assert Folder.objects.get(pk=folder.pk).name == "Work"
    assert told == [alice.pk]


def test_renaming_a_folder_to_anothers_name_is_refused(signed_in, alice, told) -> None:
    organise.do_create_folder(alice.pk, "Home")
    folder = organise.do_create_folder(alice.pk, "Work")
    response = signed_in.post(reverse("chat:rename_folder", args=[folder.pk]), {"name": "home"}, **HTMX)
    assert "You already have a folder named “home”." in response.content.decode()
    assert Folder.objects.get(pk=folder.pk).name == "Work"


def test_moving_files_a_conversation_and_moving_to_no_folder_returns_it(signed_in, alice, told) -> None:
    folder = organise.do_create_folder(alice.pk, "Work")
    conversation = chat(alice)

    signed_in.post(reverse("chat:move", args=[conversation.pk]), {"folder": folder.pk}, **HTMX)
    assert [c.pk for c in sidebar.load(alice.pk).folders[0].items] == [conversation.pk]
    assert sidebar.load(alice.pk).recent == []

    signed_in.post(reverse("chat:move", args=[conversation.pk]), {"folder": ""}, **HTMX)
    assert [c.pk for c in sidebar.load(alice.pk).recent] == [conversation.pk]
    assert told == [alice.pk, alice.pk]


def test_deleting_a_folder_keeps_its_conversations_in_the_plain_list(signed_in, alice, told) -> None:
    folder = organise.do_create_folder(alice.pk, "Work")
    conversation = chat(alice, folder=folder)

    signed_in.post(reverse("chat:delete_folder", args=[folder.pk]), **HTMX)

    assert not Folder.objects.filter(pk=folder.pk).exists()
    assert [c.pk for c in sidebar.load(alice.pk).recent] == [conversation.pk]
    assert told == [alice.pk]


def test_a_full_folder_shows_its_newest_and_links_to_the_rest(signed_in, alice) -> None:
    folder = organise.do_create_folder(alice.pk, "Big")
    for n in range(sidebar.FOLDER_LENGTH + 1):
        chat(alice, f"Chat {n}", folder=folder)

    shown = sidebar.load(alice.pk).folders[0]
    assert (len(shown.items), shown.more) == (sidebar.FOLDER_LENGTH, True)
    assert shown.items[0].title == f"Chat {sidebar.FOLDER_LENGTH}"
    page = signed_in.get(reverse("chat:folder", args=[folder.pk])).content.decode()
    assert "Chat 0" in page


def test_the_answer_marks_the_page_that_asked(signed_in, alice, told) -> None:
    here, other = chat(alice, "Here"), chat(alice, "Other")
    response = signed_in.post(reverse("chat:pin", args=[other.pk]), {"pinned": "1"}, **page_of(here))
    html = response.content.decode()
    assert f'href="/conversations/{here.pk}/" aria-current="page"' in html
    assert f'action="/conversations/{here.pk}/pin/"' in html


def test_hostile_folder_names_are_escaped_everywhere_they_show(signed_in, alice, told) -> None:
    conversation = chat(alice)
    signed_in.post(reverse("chat:new_folder"), {"name": HOSTILE[:60]}, **HTMX)
    folder = Folder.objects.get(owner=alice)
    conversation.folder = folder
    conversation.save()
    refused = signed_in.post(reverse("chat:new_folder"), {"name": HOSTILE[:60]}, **HTMX).content.decode()
    pages = [
        refused,
        signed_in.get(reverse("chat:conversation", args=[conversation.pk])).content.decode(),
        signed_in.get(reverse("chat:folder", args=[folder.pk])).content.decode(),
    ]
    for html in pages:
        assert "<img src=x" not in html
        assert "<script>window" not in html
        assert "&lt;img src=x onerror=" in html


def test_the_folder_of_the_open_conversation_starts_open(signed_in, alice) -> None:
    folder = organise.do_create_folder(alice.pk, "Work")
    inside, outside = chat(alice, "Inside", folder=folder), chat(alice, "Outside")
    opened = f'id="folder-{folder.pk}" open'
    assert opened in signed_in.get(reverse("chat:conversation", args=[inside.pk])).content.decode()
    assert opened not in signed_in.get(reverse("chat:conversation", args=[outside.pk])).content.decode()


def test_home_opens_the_newest_conversation_that_is_not_archived(signed_in, alice) -> None:
    kept = chat(alice, "Kept")
    chat(alice, "Put away", archived_at="2026-01-01T00:00Z")
    assert signed_in.get(reverse("chat:home"))["Location"] == reverse("chat:conversation", args=[kept.pk])


def test_the_database_refuses_a_second_folder_of_the_same_name_in_other_case(alice) -> None:
    organise.do_create_folder(alice.pk, "Work")
    # As when two tabs make it at once, both past the check.
    with pytest.raises(organise.ChatError, match="You already have a folder named “WORK”"):
        organise._saved(Folder(owner=alice, name="WORK"))
    assert Folder.objects.filter(owner=alice).count() == 1


def test_without_htmx_a_refusal_is_flashed_on_the_page_it_came_from(signed_in, alice, told) -> None:
    conversation = chat(alice)
    back = f"http://testserver/conversations/{conversation.pk}/"
    response = signed_in.post(reverse("chat:new_folder"), {"name": " "}, HTTP_REFERER=back, follow=True)
    assert response.redirect_chain[0][0] == back
    assert "A folder needs a name." in response.content.decode()


@pytest.mark.parametrize("value", ["abc", "999999"])
def test_moving_into_a_folder_that_is_not_there_is_not_found(signed_in, alice, told, value) -> None:
    conversation = chat(alice)
    response = signed_in.post(reverse("chat:move", args=[conversation.pk]), {"folder": value}, **HTMX)
    assert response.status_code == 404
    assert told == []


# The sidebar's links, drawn in Python (``rendering.conversation_link``)


def link_as_a_template_draws_it(item: Conversation, current: Conversation) -> str:
    """The link as the template include drew it before: ``{% url %}`` for each URL (and
    the item's id, which ``rendering.retitled_html`` swaps)."""
    marked = ' aria-current="page"' if item.pk == current.pk else ""
    title = str(item).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
    title = title.replace("'", "&#x27;")
    return (
        f'<li id="sidebar-conversation-{item.pk}">'
        f'<a href="{reverse("chat:conversation", args=[item.pk])}"{marked} '
        f'data-move="{reverse("chat:move", args=[item.pk])}">{title}</a></li>'
    )


@pytest.mark.parametrize("prefix", ["/", "/chat/"])
def test_every_sidebar_link_has_the_urls_reverse_makes_in_every_section(alice, prefix) -> None:
    folder = Folder.objects.create(owner=alice, name="Work")
    pinned = chat(alice, "Pinned", pinned_at="2026-01-01T00:00:00Z")
    filed = chat(alice, "Filed", folder=folder)
    hostile = chat(alice, HOSTILE)
    plain = [chat(alice, f"Chat {n}") for n in (7, 98, 1000)]
    set_script_prefix(prefix)
    try:
        html = rendering.sidebar_html(sidebar.load(alice.pk), plain[0])
        for item in (pinned, filed, hostile, *plain):
            assert html.count(link_as_a_template_draws_it(item, plain[0])) == 1, item
        assert html.count('aria-current="page"') == 1
        assert f'href="{prefix}conversations/{plain[0].pk}/"' in html
        assert "<script>" not in html
    finally:
        set_script_prefix("/")
