"""The benchmark's side of the app's database, run as ``python -m bench.dbprep COMMAND``.

It runs in a subprocess with the app's environment (each configuration has its own
``DATABASE_URL``), prints JSON on stdout and reads JSON on stdin where it needs to.

Database writes are counted by triggers that log every INSERT and UPDATE of a row of
``chat_message`` and ``chat_conversation`` into ``bench_write``: the same count on
SQLite and PostgreSQL, per row, whatever code path wrote it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

SQLITE_TRIGGERS = [
    "CREATE TABLE IF NOT EXISTS bench_write (id INTEGER PRIMARY KEY, tbl TEXT, row_id INTEGER, op TEXT)",
    *(
        f"CREATE TRIGGER IF NOT EXISTS bench_{table}_{op.lower()} AFTER {op} ON chat_{table} "
        f"BEGIN INSERT INTO bench_write (tbl, row_id, op) VALUES ('{table}', NEW.id, '{op[0]}'); END"
        for table in ("message", "conversation")
        for op in ("INSERT", "UPDATE")
    ),
]
POSTGRES_TRIGGERS = [
    "CREATE TABLE IF NOT EXISTS bench_write (id bigserial PRIMARY KEY, tbl text, row_id bigint, op text)",
    "CREATE OR REPLACE FUNCTION bench_log() RETURNS trigger AS $$ BEGIN "
    "INSERT INTO bench_write (tbl, row_id, op) VALUES (TG_ARGV[0], NEW.id, left(TG_OP, 1)); "
    "RETURN NULL; END $$ LANGUAGE plpgsql",
    *(
        statement
        for table in ("message", "conversation")
        for statement in (
            f"DROP TRIGGER IF EXISTS bench_{table} ON chat_{table}",
            f"CREATE TRIGGER bench_{table} AFTER INSERT OR UPDATE ON chat_{table} "
            f"FOR EACH ROW EXECUTE FUNCTION bench_log('{table}')",
        )
    ),
]


def ensure_users(count: int, password: str) -> list[Any]:
    """Users ``bench-0`` .. ``bench-N``: one password hash, computed once, for all of them."""
    from django.contrib.auth.hashers import make_password
    from django.contrib.auth.models import User

    names = [f"bench-{i}" for i in range(count)]
    existing = set(User.objects.filter(username__in=names).values_list("username", flat=True))
    if missing := [n for n in names if n not in existing]:
        hashed = make_password(password)
        User.objects.bulk_create([User(username=n, password=hashed) for n in missing])
    users = {u.username: u for u in User.objects.filter(username__in=names)}
    return [users[n] for n in names]


def session_cookie(user: Any) -> str:
    """A logged-in session for ``user``, made as ``django.contrib.auth.login`` makes one.

    Logging K people in through the form would cost K password hashes (about 0.4 s of
    CPU each here); the form itself is exercised once per configuration.
    """
    from importlib import import_module

    from django.conf import settings
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY

    backends = settings.AUTHENTICATION_BACKENDS
    backend = next((b for b in backends if b.endswith("ModelBackend")), backends[-1])
    session = import_module(settings.SESSION_ENGINE).SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = backend
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.create()
    return f"{settings.SESSION_COOKIE_NAME}={session.session_key}"


def setup(users: int, password: str) -> dict[str, Any]:
    """The first users and the write-counting triggers."""
    from django.db import connection

    names = [u.username for u in ensure_users(users, password)]
    statements = POSTGRES_TRIGGERS if connection.vendor == "postgresql" else SQLITE_TRIGGERS
    with connection.cursor() as cursor:
        for statement in statements:
            cursor.execute(statement)
    return {"users": names, "vendor": connection.vendor}


EARLIER = "Earlier conversation"


def ensure_history(owners: list[Any], history: int, provider: Any) -> None:
    """At least ``history`` earlier conversations of each person, with titles: a sidebar as
    full as a real person's (it lists up to ``chat.sidebar.SIDEBAR_LENGTH``)."""
    from django.db.models import Count

    from chat.models import Conversation

    have = dict(
        Conversation.objects.filter(owner__in=owners, title__startswith=EARLIER)
        .values_list("owner")
        .annotate(n=Count("id"))
    )
    Conversation.objects.bulk_create(
        [
            Conversation(
                owner=owner, title=f"{EARLIER} {n}", provider=provider.name, model=provider.models[0].name
            )
            for owner in owners
            for n in range(have.get(owner.pk, 0), history)
        ],
        batch_size=500,
    )


def conversations(users: int, count: int, password: str, history: int = 0) -> dict[str, Any]:
    """``count`` empty conversations dealt round-robin to ``users`` people, each with a
    fresh session and ``history`` earlier conversations; clears the write log."""
    from django.db import connection

    from chat.models import Conversation
    from chat.providers.config import get_providers

    provider = next(iter(get_providers().values()))
    owners = ensure_users(users, password)
    ensure_history(owners, history, provider)
    created = Conversation.objects.bulk_create(
        [
            Conversation(owner=owners[i % len(owners)], provider=provider.name, model=provider.models[0].name)
            for i in range(count)
        ]
    )
    if any(c.pk is None for c in created):  # no RETURNING on this database: read them back
        created = list(Conversation.objects.order_by("-id")[:count])[::-1]
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM bench_write")
    return {
        "conversations": [[c.owner.username, c.pk] for c in created],
        "cookies": {u.username: session_cookie(u) for u in owners},
    }


def report(reply_ids: list[int]) -> dict[str, Any]:
    """Each reply as persisted, with the writes its row took; and all writes logged."""
    from django.db import connection

    from chat import rendering
    from chat.models import Message

    with connection.cursor() as cursor:
        cursor.execute("SELECT tbl, row_id, count(*) FROM bench_write GROUP BY tbl, row_id")
        rows = cursor.fetchall()
    writes = {(table, row): n for table, row, n in rows}
    replies = {
        m.pk: {
            "status": m.status,
            "content": m.content,
            "duration_ms": m.duration_ms,
            "ttft_ms": m.time_to_first_token_ms,
            "writes": writes.get(("message", m.pk), 0),
            # What the consumer's final frame must start with: the persisted row rendered, up
            # to the footer (after it come controls with fresh random ids).
            "final_html": rendering.message_html(m, oob=True).split("<footer", 1)[0],
            # The same in a redraw of the thread, where it is no out-of-band swap.
            "drawn_html": rendering.message_html(m).split("<footer", 1)[0],
        }
        for m in Message.objects.filter(pk__in=reply_ids)
    }
    return {"replies": {str(k): v for k, v in replies.items()}, "writes_total": sum(writes.values())}


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatsite.settings")
    import django

    django.setup()
    parser = argparse.ArgumentParser()
    parser.add_argument("command", choices=["setup", "conversations", "report"])
    parser.add_argument("--users", type=int, default=1)
    parser.add_argument("--count", type=int, default=1)
    parser.add_argument("--password", default="")
    parser.add_argument("--history", type=int, default=0)
    args = parser.parse_args()
    if args.command == "setup":
        result = setup(args.users, args.password)
    elif args.command == "conversations":
        result = conversations(args.users, args.count, args.password, args.history)
    else:
        result = report([int(i) for i in json.load(sys.stdin)])
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
