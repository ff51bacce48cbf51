"""Feedback on replies: rate, change, remove, comment, and only on one's own finished replies."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.urls import reverse

from chat import branches, rendering
from chat.feedback import COMMENT_LIMIT
from chat.models import Conversation, Feedback, Message
from tests.admin_data import make_conversation, make_exchange, make_user

pytestmark = pytest.mark.django_db

HOSTILE = '<img src=x onerror="window.pwned=1"><script>window.pwned=2</script>'


@pytest.fixture
def alice() -> User:
    return make_user("alice")


@pytest.fixture
def reply(alice: User) -> Message:
    return make_exchange(make_conversation(alice, "Tides"), "When is high tide?", "At noon.")[1]


def rate(client, reply: Message, rating: str, comment: str = ""):
    return client.post(reverse("chat:feedback", args=[reply.pk]), {"rating": rating, "comment": comment})


def test_the_owner_rates_a_reply_with_a_comment(client, alice: User, reply: Message) -> None:
    client.force_login(alice)
    response = rate(client, reply, "down", "  Wrong: high tide is at 3 pm.  ")

    assert response.status_code == 200
    feedback = Feedback.objects.get()
    assert (feedback.message, feedback.user, feedback.rating) == (reply, alice, "down")
    assert feedback.comment == "Wrong: high tide is at 3 pm."
    html = response.content.decode()
    assert f'id="message-{reply.pk}-feedback"' in html
    assert 'aria-label="Bad reply" title="Bad reply" aria-pressed="true"' in html
    assert 'aria-label="Good reply" title="Good reply" aria-pressed="false"' in html


def test_a_rating_can_be_changed_and_stays_one_per_person(client, alice: User, reply: Message) -> None:
    client.force_login(alice)
    rate(client, reply, "down", "Too long")
    rate(client, reply, "up", "Fine after all")

    feedback = Feedback.objects.get()
    assert (feedback.rating, feedback.comment) == ("up", "Fine after all")


def test_pressing_the_pressed_thumb_removes_the_rating(client, alice: User, reply: Message) -> None:
    client.force_login(alice)
    rate(client, reply, "up", "Nice")
    html = rate(client, reply, "up").content.decode()
    assert 'name="rating" value="none"' in html  # the pressed thumb now takes it back

    response = rate(client, reply, "none")

    assert response.status_code == 200
    assert not Feedback.objects.exists()
    assert 'aria-pressed="true"' not in response.content.decode()
    assert "Rating removed." in response.content.decode()


def test_a_comment_over_the_limit_is_refused_with_a_clear_error(client, alice: User, reply: Message) -> None:
    client.force_login(alice)
    rate(client, reply, "up", "Short")
    too_long = "x" * (COMMENT_LIMIT + 1)

    response = rate(client, reply, "down", too_long)

    html = response.content.decode()
    assert f"That comment is 1,001 characters; the limit is {COMMENT_LIMIT:,}." in html
    assert 'role="alert"' in html
    assert too_long in html  # kept in the box to shorten
    feedback = Feedback.objects.get()
    assert (feedback.rating, feedback.comment) == ("up", "Short")


def test_an_unknown_rating_is_refused(client, alice: User, reply: Message) -> None:
    client.force_login(alice)
    for rating in ["sideways", "", "UP"]:
        response = rate(client, reply, rating)
        assert response.status_code == 400
    assert not Feedback.objects.exists()


def test_another_users_reply_cannot_be_rated(client, alice: User, reply: Message) -> None:
    client.force_login(make_user("mallory"))
    assert rate(client, reply, "down", "spite").status_code == 404
    assert not Feedback.objects.exists()


def test_a_logged_out_visitor_is_sent_to_log_in(client, reply: Message) -> None:
    response = rate(client, reply, "up")
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))
    assert not Feedback.objects.exists()


def test_a_persons_own_message_cannot_be_rated(client, alice: User, reply: Message) -> None:
    client.force_login(alice)
    question = Message.objects.get(role=Message.Role.USER)
    assert rate(client, question, "up").status_code == 404
    assert not Feedback.objects.exists()


@pytest.mark.parametrize("status", [Message.Status.PENDING, Message.Status.STREAMING])
def test_a_reply_being_written_cannot_be_rated_and_shows_no_controls(
    client, alice: User, status: str
) -> None:
    conversation = make_conversation(alice, "Live")
    _, streaming = make_exchange(conversation, "q", "So far", status=status)
    client.force_login(alice)

    assert rate(client, streaming, "up").status_code == 400
    assert not Feedback.objects.exists()
    page = client.get(reverse("chat:conversation", args=[conversation.pk])).content.decode()
    assert f'id="message-{streaming.pk}-body"' in page
    assert 'class="feedback"' not in page


def test_a_stopped_reply_with_text_can_be_rated_but_an_empty_failure_cannot(client, alice: User) -> None:
    conversation = make_conversation(alice, "Ends")
    _, stopped = make_exchange(conversation, "q", "Half an answer", status=Message.Status.CANCELLED)
    _, failed = make_exchange(conversation, "q", "", status=Message.Status.ERROR, error="Upstream down")
    client.force_login(alice)

    assert rate(client, stopped, "down").status_code == 200
    assert rate(client, failed, "down").status_code == 400
    assert list(Feedback.objects.values_list("message_id", flat=True)) == [stopped.pk]


def test_a_reload_draws_the_rating_and_comment_kept(client, alice: User, reply: Message) -> None:
    client.force_login(alice)
    rate(client, reply, "down", "Missed the point")

    page = client.get(reverse("chat:conversation", args=[reply.conversation_id])).content.decode()

    assert 'aria-label="Bad reply" title="Bad reply" aria-pressed="true"' in page
    assert ">Missed the point</textarea>" in page


def test_a_replys_final_frame_draws_the_same_controls_as_a_reload(
    client, alice: User, reply: Message
) -> None:
    client.force_login(alice)
    rate(client, reply, "up", "Good")
    [drawn] = branches.with_versions([Message.objects.get(pk=reply.pk)])

    frame = rendering.message_html(drawn, oob=True)
    page = client.get(reverse("chat:conversation", args=[reply.conversation_id])).content.decode()

    fragment = frame[frame.index('<form id="message-') : frame.index("</form>")]
    assert 'aria-pressed="true"' in fragment
    assert fragment in page


def test_a_hostile_comment_is_escaped_in_the_fragment_and_the_page(
    client, alice: User, reply: Message
) -> None:
    client.force_login(alice)
    fragment = rate(client, reply, "down", HOSTILE).content.decode()
    page = client.get(reverse("chat:conversation", args=[reply.conversation_id])).content.decode()

    for html in (fragment, page):
        assert "<img src=x" not in html
        assert "<script>window.pwned" not in html
        assert "&lt;img src=x onerror=&quot;window.pwned=1&quot;&gt;" in html


def test_deleting_a_conversation_deletes_its_feedback(client, alice: User, reply: Message) -> None:
    client.force_login(alice)
    rate(client, reply, "up")

    client.post(reverse("chat:delete", args=[reply.conversation_id]))

    assert not Conversation.objects.exists()
    assert not Feedback.objects.exists()
