"""Share links: making, listing and revoking them, the snapshot, the shared page, continuing it."""

from __future__ import annotations

import base64
import hashlib
import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from chat import branches
from chat.models import Conversation, Message, ShareLink

pytestmark = pytest.mark.django_db

PROMPT = "Speak like a pirate."
HOSTILE = '<img src=x onerror="window.pwned=1"><script>window.pwned=1</script>'
PROVIDERS = """
[[providers]]
name = "demo"
dialect = "openai-chat"
base_url = "{sim}/v1"
models = ["demo-1"]

[[providers]]
name = "other"
dialect = "openai-chat"
base_url = "{sim}/v1"
models = ["other-1"]
"""


@pytest.fixture
def alice(django_user_model) -> User:
    return django_user_model.objects.create_user("alice", email="alice@example.com", password="x" * 12)


@pytest.fixture
def bob(django_user_model) -> User:
    return django_user_model.objects.create_user("bob", password="x" * 12)


class Tree:
    """A conversation's messages made in order, each a moment after the last, so the newest is chosen."""

    def __init__(self, conversation: Conversation) -> None:
        self.conversation = conversation
        self.clock = timezone.now()

    def add(self, role: str, content: str, parent: Message | None = None, **fields) -> Message:
        self.clock += timedelta(seconds=1)
        return Message.objects.create(
            conversation=self.conversation, role=role, content=content, parent=parent,
            selected_at=self.clock, **fields,
        )  # fmt: skip


@pytest.fixture
def tides(alice: User) -> Conversation:
    """Alice's conversation: a question, a reply in two versions (the second shown), a follow-up."""
    conversation = Conversation.objects.create(
        owner=alice, provider="demo", model="demo-1", title="Tide tables", system_prompt=PROMPT
    )
    tree = Tree(conversation)
    question = tree.add("user", "When is high tide?")
    tree.add("assistant", "Old version: at dawn.", question)
    answer = tree.add("assistant", "At **noon**.", question)
    follow_up = tree.add("user", "And tomorrow?", answer)
    tree.add("assistant", "At one.", follow_up)
    conversation.tree = tree
    return conversation


def make_link(client: Client, conversation: Conversation, *, system_prompt: bool = False) -> str:
    """The token of a new link, read from the page that shows it once."""
    data = {"include_system_prompt": "on"} if system_prompt else {}
    response = client.post(reverse("chat:make_share_link", args=[conversation.pk]), data)
    assert response.status_code == 200
    return re.search(r"/shared/([\w-]+)/", response.content.decode())[1]


def shared_url(token: str) -> str:
    return reverse("chat:shared", args=[token])


@pytest.fixture
def token(client: Client, alice: User, tides: Conversation) -> str:
    client.force_login(alice)
    token = make_link(client, tides)
    client.logout()
    return token


# Making, listing, revoking


def test_making_a_link_shows_its_address_once(client, alice, tides) -> None:
    client.force_login(alice)
    response = client.post(reverse("chat:make_share_link", args=[tides.pk]))
    token = re.search(r"http://testserver/shared/([\w-]+)/", response.content.decode())[1]

    assert response["Cache-Control"] == "private, no-store"
    assert token not in client.get(reverse("chat:share_links", args=[tides.pk])).content.decode()


def test_only_the_tokens_hash_is_stored(client, alice, tides) -> None:
    client.force_login(alice)
    token = make_link(client, tides)
    link = ShareLink.objects.get()
    assert link.token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert token not in str(ShareLink.objects.values().get())


def test_a_token_carries_at_least_128_random_bits(client, alice, tides) -> None:
    client.force_login(alice)
    first, second = make_link(client, tides), make_link(client, tides)
    assert len(base64.urlsafe_b64decode(first + "=" * (-len(first) % 4))) >= 16
    assert first != second


def test_the_owner_lists_the_links_of_a_conversation(client, alice, tides) -> None:
    client.force_login(alice)
    make_link(client, tides)
    make_link(client, tides, system_prompt=True)
    response = client.get(reverse("chat:share_links", args=[tides.pk]))
    links = ShareLink.objects.filter(conversation=tides)
    assert [link.pk for link in response.context["links"]] == [link.pk for link in links]
    for link in links:
        assert f'id="share-link-{link.pk}"'.encode() in response.content
    assert b"included" in response.content and b"left out" in response.content


def test_the_conversation_page_links_to_its_share_links(client, alice, tides, sim) -> None:
    client.force_login(alice)
    response = client.get(reverse("chat:conversation", args=[tides.pk]))
    assert reverse("chat:share_links", args=[tides.pk]).encode() in response.content


def test_a_revoked_link_answers_404(client, alice, tides) -> None:
    client.force_login(alice)
    token = make_link(client, tides)
    link = ShareLink.objects.get()
    response = client.post(reverse("chat:revoke_share_link", args=[link.pk]), follow=True)

    assert b"Revoked" in response.content
    assert client.get(shared_url(token)).status_code == 404


def test_a_revoked_link_answers_exactly_as_one_that_never_existed(client, alice, tides) -> None:
    client.force_login(alice)
    token = make_link(client, tides)
    client.post(reverse("chat:revoke_share_link", args=[ShareLink.objects.get().pk]))
    client.logout()
    revoked = client.get(shared_url(token))
    unknown = client.get(shared_url("x" * len(token)))
    assert revoked.status_code == unknown.status_code == 404
    assert revoked.content == unknown.content


def test_a_deleted_conversations_link_answers_404(client, alice, tides, token) -> None:
    tides.delete()
    assert client.get(shared_url(token)).status_code == 404


def test_an_unknown_token_answers_404(client) -> None:
    assert client.get(shared_url("no-such-token")).status_code == 404


# The snapshot


def test_the_shared_page_shows_the_visible_branch_only(client, token) -> None:
    response = client.get(shared_url(token))
    assert [m["content"] for m in response.context["snapshot"]["messages"]] == [
        "When is high tide?",
        "At **noon**.",
        "And tomorrow?",
        "At one.",
    ]
    assert b"<strong>noon</strong>" in response.content
    assert b"Old version" not in response.content


def test_messages_added_after_the_link_was_made_never_appear(client, tides, token) -> None:
    last = tides.messages.order_by("created_at").last()
    tides.tree.add("user", "Later question", last)
    assert b"Later question" not in client.get(shared_url(token)).content


def test_an_edit_made_after_the_link_was_made_never_appears(client, tides, token) -> None:
    tides.tree.add("user", "Edited question", None)
    content = client.get(shared_url(token)).content
    assert b"Edited question" not in content
    assert b"When is high tide?" in content


def test_another_version_chosen_after_the_link_was_made_never_appears(client, tides, token) -> None:
    later = timezone.now() + timedelta(hours=1)
    Message.objects.filter(content="Old version: at dawn.").update(selected_at=later)
    content = client.get(shared_url(token)).content
    assert b"Old version" not in content
    assert b"<strong>noon</strong>" in content


def test_a_reply_still_being_written_is_left_out(client, alice, tides) -> None:
    last = tides.messages.order_by("created_at").last()
    question = tides.tree.add("user", "One more?", last)
    tides.tree.add("assistant", "Half a rep", question, status=Message.Status.STREAMING)
    client.force_login(alice)
    token = make_link(client, tides)
    messages = client.get(shared_url(token)).context["snapshot"]["messages"]
    assert messages[-1]["content"] == "One more?"
    assert "Half a rep" not in str(messages)


def test_the_system_prompt_is_left_out_by_default(client, token) -> None:
    assert b"Speak like a pirate." not in client.get(shared_url(token)).content


def test_the_system_prompt_is_shown_when_the_owner_included_it(client, alice, tides) -> None:
    client.force_login(alice)
    token = make_link(client, tides, system_prompt=True)
    assert b"Speak like a pirate." in client.get(shared_url(token)).content


# The shared page


def test_the_shared_page_needs_no_login(client, token) -> None:
    response = client.get(shared_url(token))
    assert response.status_code == 200
    assert b"Tide tables" in response.content
    assert reverse("chat:continue_shared", args=[token]).encode() in response.content


def test_the_shared_page_sets_no_cookie(client, token) -> None:
    assert not client.get(shared_url(token)).cookies


def test_the_shared_page_shows_nothing_of_the_owner_or_their_other_chats(client, alice, token) -> None:
    Conversation.objects.create(owner=alice, provider="demo", model="demo-1", title="Private diary")
    content = client.get(shared_url(token)).content
    assert b"alice" not in content.lower()
    assert b"Private diary" not in content
    assert b'aria-label="Conversations"' not in content


def test_the_shared_page_loads_no_socket(client, token) -> None:
    content = client.get(shared_url(token)).content
    assert b"htmx" not in content.replace(b"htmx-config", b"")
    assert b"ws-connect" not in content
    assert b"/ws/" not in content


def test_the_shared_page_asks_not_to_be_indexed_and_sends_no_referrer(client, token) -> None:
    response = client.get(shared_url(token))
    assert response["X-Robots-Tag"] == "noindex"
    assert response["Referrer-Policy"] == "no-referrer"
    assert b'<meta name="robots" content="noindex">' in response.content
    assert response["Cache-Control"] == "private, no-store"


def test_the_shared_page_keeps_the_content_security_policy_and_frame_denial(client, token) -> None:
    response = client.get(shared_url(token))
    policy = response["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"


def test_hostile_text_on_the_shared_page_is_escaped(client, alice) -> None:
    conversation = Conversation.objects.create(
        owner=alice, provider="demo", model="demo-1", title=HOSTILE, system_prompt=HOSTILE
    )
    tree = Tree(conversation)
    tree.add("assistant", HOSTILE, tree.add("user", HOSTILE, image_url="https://example.com/x.png?a=<b>"))
    client.force_login(alice)
    token = make_link(client, conversation, system_prompt=True)
    content = client.get(shared_url(token)).content.decode()
    assert "<img" not in content
    assert "<script>" not in content
    assert "&lt;img src=x onerror=&quot;window.pwned=1&quot;&gt;" in content
    # The title (twice), the system prompt, the person's message and the reply.
    assert content.count("&lt;script&gt;window.pwned=1&lt;/script&gt;") == 5


# Continuing


def test_continuing_copies_the_snapshot_into_a_new_conversation_of_the_viewer(
    client, bob, tides, token, sim
) -> None:
    client.force_login(bob)
    response = client.post(reverse("chat:continue_shared", args=[token]))
    copy = Conversation.objects.get(owner=bob)
    assert response["Location"] == reverse("chat:conversation", args=[copy.pk])
    assert [(m.role, m.content) for m in branches.visible_path(copy.pk)] == [
        ("user", "When is high tide?"),
        ("assistant", "At **noon**."),
        ("user", "And tomorrow?"),
        ("assistant", "At one."),
    ]
    assert (copy.title, copy.system_prompt) == ("Tide tables", "")
    assert tides.messages.count() == 5


def test_continuing_copies_no_usage(client, bob, alice, sim) -> None:
    conversation = Conversation.objects.create(owner=alice, provider="demo", model="demo-1")
    tree = Tree(conversation)
    tree.add("assistant", "Answer", tree.add("user", "Question"), input_tokens=5, output_tokens=9, cost="0.1")
    client.force_login(alice)
    token = make_link(client, conversation)
    client.force_login(bob)
    client.post(reverse("chat:continue_shared", args=[token]))
    reply = Message.objects.get(conversation__owner=bob, role="assistant")
    assert (reply.input_tokens, reply.output_tokens, reply.cost) == (None, None, None)


def test_continuing_keeps_the_system_prompt_that_was_shared(client, alice, bob, tides, sim) -> None:
    client.force_login(alice)
    token = make_link(client, tides, system_prompt=True)
    client.force_login(bob)
    client.post(reverse("chat:continue_shared", args=[token]))
    assert Conversation.objects.get(owner=bob).system_prompt == "Speak like a pirate."


def test_continuing_keeps_the_model_while_it_is_configured(client, alice, bob, providers_file) -> None:
    providers_file(PROVIDERS)
    conversation = Conversation.objects.create(owner=alice, provider="other", model="other-1")
    client.force_login(alice)
    token = make_link(client, conversation)
    client.force_login(bob)
    client.post(reverse("chat:continue_shared", args=[token]))
    assert Conversation.objects.get(owner=bob).model_choice == "other/other-1"


def test_continuing_falls_back_to_the_default_model_when_it_is_gone(client, alice, bob, sim) -> None:
    conversation = Conversation.objects.create(owner=alice, provider="retired", model="old-1")
    client.force_login(alice)
    token = make_link(client, conversation)
    client.force_login(bob)
    client.post(reverse("chat:continue_shared", args=[token]))
    assert Conversation.objects.get(owner=bob).model_choice == "demo/demo-1"


def test_continuing_asks_first_on_a_page_of_its_own(client, bob, token) -> None:
    client.force_login(bob)
    response = client.get(reverse("chat:continue_shared", args=[token]))
    assert b"Its 4 messages will be copied" in response.content
    assert b'method="post"' in response.content
    assert (response["X-Robots-Tag"], response["Cache-Control"]) == ("noindex", "private, no-store")
    assert not Conversation.objects.filter(owner=bob).exists()


@pytest.mark.parametrize("method", ["get", "post"])
def test_continuing_when_logged_out_goes_to_log_in_and_back(client, token, method: str) -> None:
    url = reverse("chat:continue_shared", args=[token])
    response = getattr(client, method)(url)
    assert response.status_code == 302
    assert response["Location"] == f"{reverse('login')}?next={url}"
    assert Conversation.objects.count() == 1


def test_a_revoked_link_cannot_be_continued(client, bob, token, sim) -> None:
    ShareLink.objects.update(revoked_at=timezone.now())
    client.force_login(bob)
    assert client.get(reverse("chat:continue_shared", args=[token])).status_code == 404
    assert client.post(reverse("chat:continue_shared", args=[token])).status_code == 404
    assert not Conversation.objects.filter(owner=bob).exists()


# Isolation


def test_another_user_cannot_list_a_conversations_links(client, bob, tides, token) -> None:
    client.force_login(bob)
    assert client.get(reverse("chat:share_links", args=[tides.pk])).status_code == 404


def test_another_user_cannot_make_a_link(client, bob, tides) -> None:
    client.force_login(bob)
    assert client.post(reverse("chat:make_share_link", args=[tides.pk])).status_code == 404
    assert not ShareLink.objects.exists()


def test_another_user_cannot_revoke_a_link(client, bob, token) -> None:
    client.force_login(bob)
    link = ShareLink.objects.get()
    assert client.post(reverse("chat:revoke_share_link", args=[link.pk])).status_code == 404
    assert client.get(shared_url(token)).status_code == 200


def test_the_owners_pages_send_a_logged_out_visitor_to_log_in(client, tides, token) -> None:
    link = ShareLink.objects.get()
    for method, url in [
        (client.get, reverse("chat:share_links", args=[tides.pk])),
        (client.post, reverse("chat:make_share_link", args=[tides.pk])),
        (client.post, reverse("chat:revoke_share_link", args=[link.pk])),
    ]:
        response = method(url)
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("login"))
    assert ShareLink.objects.filter(revoked_at=None).count() == 1


def test_a_reply_on_the_shared_page_is_drawn_as_the_chat_draws_it(client, alice, sim) -> None:
    conversation = Conversation.objects.create(owner=alice, provider="demo", model="demo-1")
    tree = Tree(conversation)
    # A table cut off after its header row: the chat draws it as a table already.
    tree.add("assistant", "Look:\n\n| Dialect | End |", tree.add("user", "Tables?"))
    client.force_login(alice)
    token = make_link(client, conversation)
    chat = client.get(reverse("chat:conversation", args=[conversation.pk])).content.decode()
    shared = client.get(shared_url(token)).content.decode()
    assert "<th>Dialect</th>" in chat
    assert "<th>Dialect</th>" in shared
