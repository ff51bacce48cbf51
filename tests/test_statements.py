"""The statements written out as SQL (``chat.sql``) read and write what the ORM would.

Each is compared with the ORM query it replaced, on rows made to tell them apart: other
people's, ended and running replies, old and new messages, pinned, archived and filed
conversations, several versions of a turn. The suite runs them on SQLite;
``tests/scaleout/test_statements_on_postgresql.py`` runs this module on PostgreSQL.
"""

from __future__ import annotations

import os
from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth import SESSION_KEY
from django.core.exceptions import FieldDoesNotExist
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from chat import access, branches, checks, consumers, following, replies, services, sidebar, sql
from chat.models import Conversation, Folder, Message, UsageBudget, UserSession
from chat.sessions import SessionStore

pytestmark = pytest.mark.django_db


@pytest.fixture
def people(django_user_model):
    return (
        django_user_model.objects.create_user("alice", password="x" * 12),
        django_user_model.objects.create_user("bob", password="x" * 12),
    )


def test_the_database_is_the_one_the_run_asked_for() -> None:
    # Set by the PostgreSQL run, so it cannot pass on SQLite by mistake.
    assert connection.vendor == os.environ.get("TEST_DATABASE_VENDOR", connection.vendor)


def conversation(owner, **fields) -> Conversation:
    return Conversation.objects.create(owner=owner, provider="demo", model="demo-1", **fields)


def message(conversation: Conversation, role: str = "user", **fields) -> Message:
    return Message.objects.create(conversation=conversation, role=role, content="hi", **fields)


def test_rows_read_as_instances_are_what_raw_reads(people) -> None:
    alice, _ = people
    here = conversation(alice)
    first = message(here)
    reply = message(
        here,
        "assistant",
        parent=first,
        status=Message.Status.STREAMING,
        cost=Decimal("0.001234"),
        parameters={"temperature": 0.5},
        attachments=[{"name": "notes.txt", "tokens": 3}],
        tokens_estimated=True,
        heartbeat_at=timezone.now(),
        output_tokens=150,
    )
    table = Message._meta.db_table
    every = f"SELECT *, 7 AS seven FROM {table} WHERE conversation_id = %s ORDER BY id"

    def fields(instance: Message) -> dict:
        return {field.attname: getattr(instance, field.attname) for field in Message._meta.concrete_fields}

    expected = list(Message.objects.raw(every, [here.pk]))
    read = sql.instances(Message, every, [here.pk])
    assert [fields(m) for m in read] == [fields(m) for m in expected]
    assert [m.seven for m in read] == [7, 7]
    assert read[1].cost == Decimal("0.001234") and read[1].parameters == {"temperature": 0.5}
    assert read[1].heartbeat_at == Message.objects.get(pk=reply.pk).heartbeat_at
    assert read[0].input_tokens is None and read[1].tokens_estimated is True
    # A field not read is deferred, and loaded when used, as the ORM does.
    some = sql.instance(Message, f"SELECT id, content FROM {table} WHERE id = %s", [reply.pk])
    assert some.get_deferred_fields() == set(fields(read[1])) - {"id", "content"}
    assert some.cost == Decimal("0.001234")
    assert sql.instance(Message, f"SELECT * FROM {table} WHERE id = %s", [0]) is None
    with pytest.raises(FieldDoesNotExist, match="primary key"):
        sql.instances(Message, f"SELECT content FROM {table}")


def test_the_rate_counts_the_persons_messages_of_the_last_minute(people, settings) -> None:
    alice, bob = people
    here, theirs = conversation(alice), conversation(bob)
    for _ in range(3):
        message(here)
    message(here, role="assistant")
    old = message(here)
    Message.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(minutes=2))
    message(theirs)
    since = timezone.now() - timedelta(minutes=1)
    expected = Message.objects.filter(
        conversation__owner_id=alice.pk, role=Message.Role.USER, created_at__gte=since
    ).count()
    assert expected == 3
    assert sql.row(checks.RECENT_MESSAGES, [alice.pk, sql.timestamp(since)]) == (3,)
    settings.CHAT_MESSAGES_PER_MINUTE = 3
    with pytest.raises(checks.ChatError, match="faster than allowed"):
        checks.check_rate(alice.pk)
    settings.CHAT_MESSAGES_PER_MINUTE = 4
    checks.check_rate(alice.pk)


def test_running_replies_are_the_persons_pending_and_streaming_ones(people) -> None:
    alice, bob = people
    one, two, theirs = conversation(alice), conversation(alice), conversation(bob)
    pending = message(one, "assistant", status=Message.Status.PENDING)
    streaming = message(two, "assistant", status=Message.Status.STREAMING)
    for status in Message.ENDINGS:
        message(one, "assistant", status=status)
    message(theirs, "assistant", status=Message.Status.STREAMING)
    expected = set(
        Message.objects.active().filter(conversation__owner_id=alice.pk).values_list("pk", "conversation_id")
    )
    assert (
        set(sql.rows(checks.RUNNING_REPLIES, [alice.pk]))
        == expected
        == {
            (pending.pk, one.pk),
            (streaming.pk, two.pk),
        }
    )
    with pytest.raises(checks.ChatError, match="still being written"):
        checks.check_no_reply_running(one)
    Message.objects.filter(conversation=two).update(status=Message.Status.COMPLETE)
    checks.check_no_reply_running(two)


def test_the_conversation_is_the_owners_and_says_whether_they_have_a_budget(people) -> None:
    alice, bob = people
    mine = conversation(alice, title="Mine", parameters={"temperature": 0.5})
    found = services.get_conversation(alice.pk, mine.pk)
    assert (found.pk, found.title, found.parameters, found.budget_id) == (
        mine.pk,
        "Mine",
        mine.parameters,
        None,
    )
    assert found.updated_at == mine.updated_at
    with pytest.raises(services.NotFound):
        services.get_conversation(bob.pk, mine.pk)
    budget = UsageBudget.objects.create(user=alice, daily_cost_limit=Decimal("0.5"))
    assert services.get_conversation(alice.pk, mine.pk).budget_id == budget.pk


def test_a_turn_is_written_as_the_orm_writes_it(people) -> None:
    alice, _ = people
    here = conversation(alice)
    with transaction.atomic():
        person, reply = services.do_start_reply(here, "Hello there", client_id="c1", worker_channel="w")
    for written in (person, reply):
        stored = Message.objects.get(pk=written.pk)
        for field in Message._meta.concrete_fields:
            assert getattr(stored, field.attname) == getattr(written, field.attname), field.name
    assert (reply.parent_id, reply.status, reply.parameters) == (person.pk, Message.Status.PENDING, {})
    here.refresh_from_db()
    assert here.title == "Hello there"
    # The same client id again is the unique constraint's error, as from the ORM. The
    # write has no savepoint of its own: the transaction that holds it (the send's)
    # rolls back, quietly, and the connection goes on (on PostgreSQL too, where an error
    # aborts a transaction's every later statement).
    with transaction.atomic():
        assert services.do_start_reply(here, "Hello there", client_id="c1", worker_channel="w") is None
    assert Message.objects.filter(conversation=here).count() == 2
    with pytest.raises(IntegrityError), transaction.atomic():
        sql.insert(Message(conversation=here, role="user", content="again", client_id="c1"))


def test_a_title_written_meanwhile_stays_and_the_sidebar_move_is_seen(people) -> None:
    alice, _ = people
    older = conversation(alice, title="Older")
    newer = conversation(alice, title="Newer")
    Conversation.objects.filter(pk=older.pk).update(updated_at=timezone.now() - timedelta(hours=1))
    older.refresh_from_db()
    with transaction.atomic():
        reply = services._add_reply(older, message(older).pk, "w", title="Ignored")
    assert reply.moves_sidebar  # below ``newer``
    older.refresh_from_db()
    assert older.title == "Older"
    assert older.updated_at > newer.updated_at
    Message.objects.filter(pk=reply.pk).update(status=Message.Status.COMPLETE)
    with transaction.atomic():
        again = services._add_reply(older, message(older).pk, "w")
    assert not again.moves_sidebar  # at the top already


def test_the_visible_path_and_the_versions_are_the_orms(people) -> None:
    alice, _ = people
    here = conversation(alice)
    first = message(here)
    answers = [message(here, "assistant", parent=first) for _ in range(3)]
    follow = message(here, parent=answers[1])
    later = timezone.now() + timedelta(seconds=5)
    Message.objects.filter(pk=answers[1].pk).update(selected_at=later)
    rows = list(Message.objects.filter(conversation_id=here.pk).values_list("pk", "parent_id", "selected_at"))
    assert branches.shape_of(here.pk) == branches._shape(rows)
    path = branches.visible_path(here.pk)
    assert [m.pk for m in path] == [first.pk, answers[1].pk, follow.pk]
    assert path[1].versions == branches.Versions(2, 3, answers[0].pk, answers[2].pk)
    assert path[1].selected_at == later


def test_a_reply_ends_with_its_row_as_stored_and_its_versions(people) -> None:
    alice, _ = people
    here = conversation(alice)
    first = message(here)
    earlier = message(here, "assistant", parent=first, status=Message.Status.COMPLETE)
    reply = message(here, "assistant", parent=first, status=Message.Status.STREAMING)
    ended = replies.do_finish_reply(
        reply.pk, Message.Status.COMPLETE, content="Done.", output_tokens=3, cost=Decimal("0.000123")
    )
    stored = Message.objects.get(pk=reply.pk)
    assert (ended.content, ended.status, ended.cost, ended.updated_at) == (
        "Done.",
        Message.Status.COMPLETE,
        stored.cost,
        stored.updated_at,
    )
    assert ended.cost == Decimal("0.000123")
    assert (ended.versions, ended.is_last, ended.feedback_given) == (
        branches.Versions(2, 2, earlier.pk, None),
        True,
        None,
    )
    assert replies.do_finish_reply(reply.pk, Message.Status.ERROR) is None  # ended already


def test_an_update_writes_what_the_orms_update_writes_and_reads_the_row_it_leaves(people) -> None:
    alice, _ = people
    here = conversation(alice)
    by_orm, written = (message(here, "assistant", status=Message.Status.STREAMING) for _ in range(2))
    values = {
        "status": Message.Status.COMPLETE,
        "content": "Done.",
        "cost": Decimal("0.000123"),
        "parameters": {"temperature": 0.5},
        "tokens_estimated": True,
        "heartbeat_at": None,
        "updated_at": timezone.now(),
    }
    Message.objects.filter(pk=by_orm.pk).update(**values)
    left = sql.update(Message, values, "id = %s", [written.pk])
    stored, expected = Message.objects.get(pk=written.pk), Message.objects.get(pk=by_orm.pk)
    for name in values:
        assert getattr(stored, name) == getattr(expected, name), name
    for field in Message._meta.concrete_fields:
        assert getattr(left, field.attname) == getattr(stored, field.attname), field.name
    assert sql.update(Message, values, "id = %s", [0]) is None


def test_a_stop_is_asked_once_and_only_of_a_reply_still_running(people) -> None:
    alice, _ = people
    here = conversation(alice)
    running = message(here, "assistant", status=Message.Status.STREAMING)
    ended = message(here, "assistant", status=Message.Status.COMPLETE)
    assert replies.do_request_stop(running.pk, "Why " * 100)
    assert not replies.do_request_stop(running.pk, "again")
    assert not replies.do_request_stop(ended.pk)
    stopped = Message.objects.get(pk=running.pk)
    assert stopped.stop_requested_at is not None and stopped.stop_reason == ("Why " * 100)[:200]
    assert Message.objects.get(pk=ended.pk).stop_requested_at is None


def test_a_socket_opening_reads_what_the_orm_would(people) -> None:
    alice, bob = people
    here = conversation(alice)
    assert consumers.owns(alice.pk, here.pk) and not consumers.owns(bob.pk, here.pk)
    assert following.newest_message(here.pk) == 0
    first = message(here)
    running = message(here, "assistant", parent=first, status=Message.Status.STREAMING)
    message(here, "assistant", parent=first, status=Message.Status.COMPLETE)
    assert following.newest_message(here.pk) == Message.objects.order_by("-pk").first().pk
    assert [m.pk for m in consumers.get_active_replies(here.pk)] == [running.pk]


def test_a_session_is_read_until_it_expires(people) -> None:
    alice, _ = people
    store = SessionStore()
    store[SESSION_KEY] = str(alice.pk)
    store.create()
    assert SessionStore(store.session_key).load()[SESSION_KEY] == str(alice.pk)
    left = access.session_expiry(store.session_key)
    assert 0 < left <= store.get_expiry_age()
    UserSession.objects.filter(pk=store.session_key).update(expire_date=timezone.now() - timedelta(seconds=1))
    assert SessionStore(store.session_key).load() == {}
    assert access.session_expiry(store.session_key) < 0
    assert access.session_expiry("no-such-session") is None


def test_the_sidebar_sections_are_the_orms(people) -> None:
    alice, bob = people
    now = timezone.now()
    folders = [Folder.objects.create(owner=alice, name=name) for name in ("beta", "Alpha", "gamma")]
    conversation(bob, title="Theirs")
    made = []
    for n in range(12):
        fields = {"title": f"Chat {n}"}
        if n % 4 == 0:
            fields["pinned_at"] = now - timedelta(seconds=n)
        elif n % 4 == 1:
            fields["archived_at"] = now
        elif n % 4 == 2:
            fields["folder"] = folders[n % 3]
        made.append(conversation(alice, **fields))
        Conversation.objects.filter(pk=made[-1].pk).update(updated_at=now - timedelta(minutes=n * 7 % 12))
    shown = sidebar.load(alice.pk)
    mine = Conversation.objects.filter(owner_id=alice.pk)
    assert [c.pk for c in shown.pinned] == list(
        mine.filter(pinned_at__isnull=False).order_by("-pinned_at").values_list("pk", flat=True)
    )
    assert [f.name for f in shown.folders] == ["Alpha", "beta", "gamma"]
    assert [c.pk for c in shown.recent] == list(
        mine.filter(pinned_at=None, archived_at=None, folder=None).values_list("pk", flat=True)
    )
    assert shown.recent and [(c.pk, str(c)) for c in shown.recent] == [
        (c.pk, str(c)) for c in mine.filter(pinned_at=None, archived_at=None, folder=None)
    ]
