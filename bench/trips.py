"""``python -m bench.trips``: the CPU of a message's trips to the database thread.

The relay benchmark's profile names the database work a message costs a worker; this
measures it alone, on the embedded defaults (a fresh SQLite database in a temporary
directory), in CPU milliseconds per trip (``time.process_time``, median of rounds):

- ``send``: the send's one trip (``services._checked_write``: the session, the
  conversation, the limits, the message and its pending reply, what it is generated from);
- ``end``: a reply's final write and the message its final frame shows
  (``replies.do_finish_reply``);
- ``open``: a socket's opening (its session, person and expiry; the conversation's
  owner; the page's state).

It prints JSON; ``--statements`` also prints the SQL each trip runs. Run it on two trees
(``git stash``, or a worktree) to compare them; only differences within one run count.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def measure(rounds: int, per_round: int, statements: bool) -> dict:
    import django
    from django.conf import settings
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
    from django.core.management import call_command
    from django.db import connection, transaction
    from django.test.utils import CaptureQueriesContext

    django.setup()
    call_command("migrate", verbosity=0)
    from importlib import import_module

    from chat import consumers, replies, services
    from chat.auth import visitor
    from chat.models import Conversation, Message

    user = get_user_model().objects.create_user("bench", password="x" * 12)
    session = import_module(settings.SESSION_ENGINE).SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = settings.AUTHENTICATION_BACKENDS[-1]
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.create()
    key = session.session_key

    def send(conversation: Conversation) -> Message:
        def write(conversation: Conversation, worker_channel: str):
            with transaction.atomic():
                return services.do_start_reply(
                    conversation, "Hello there", client_id=uuid.uuid4().hex, worker_channel=worker_channel
                )

        messages, _job = services._checked_write(user.pk, conversation.pk, write, "bench-channel", key)
        return messages[-1]

    def end(reply: Message) -> None:
        replies.do_finish_reply(
            reply.pk, Message.Status.COMPLETE, content="x" * 800, output_tokens=150, duration_ms=3000
        )

    def open_socket(conversation: Conversation) -> None:
        visitor(key)
        consumers.owns(user.pk, conversation.pk)
        consumers.page_state(conversation.pk, None)

    def new_conversation() -> Conversation:
        return Conversation.objects.create(owner=user, provider="demo", model="demo-1")

    def rounds_of(trip: Callable[[], None]) -> float:
        times = []
        for _ in range(rounds):
            started = time.process_time()
            for _ in range(per_round):
                trip()
            times.append((time.process_time() - started) / per_round * 1000)
        return round(statistics.median(times), 3)

    # Each send in a conversation of its own, as the benchmark's clients send; each end
    # of a reply still pending.
    conversations = [new_conversation() for _ in range(rounds * per_round + 2)]
    opened = new_conversation()
    pending: list[Message] = []
    result: dict = {"per_round": per_round, "rounds": rounds, "ms": {}, "statements": {}}
    for name, trip in [
        ("send", lambda: pending.append(send(conversations.pop()))),
        ("end", lambda: end(pending.pop())),
        ("open", lambda: open_socket(opened)),
    ]:
        trip()  # warm: imports, caches, the first statement of each kind
        with CaptureQueriesContext(connection) as queries:
            trip()
        result["statements"][name] = len(queries.captured_queries)
        if statements:
            written = [" ".join(query["sql"].split()) for query in queries.captured_queries]
            result.setdefault("sql", {})[name] = written
        result["ms"][name] = rounds_of(trip)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.trips", description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--per-round", type=int, default=50)
    parser.add_argument("--statements", action="store_true", help="print the SQL of each trip")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="chat-trips-") as var:
        os.environ["CHAT_VAR_DIR"] = var
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatsite.settings")
        # One person sends them all: the per-person limits are not what is measured.
        os.environ["CHAT_MESSAGES_PER_MINUTE"] = "1000000"
        os.environ["CHAT_MAX_CONCURRENT_REPLIES"] = "1000000"
        sys.path.insert(0, str(ROOT))
        print(json.dumps(measure(args.rounds, args.per_round, args.statements), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
