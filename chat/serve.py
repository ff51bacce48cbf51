"""``python -m chat.serve``: daphne, on uvloop's event loop, after the configuration checks.

daphne makes its event loop when its server module is imported, and Twisted's asyncio
reactor runs on it; with uvloop's policy installed first, that loop is uvloop's, which
runs the relay's I/O and callbacks in C (docs/benchmark.md). Before serving, every worker
runs the system checks, the services included (``chat.configuration``): bad
configuration stops it with a message, not a 500 on the first page. Arguments are
daphne's.
"""

from __future__ import annotations

import asyncio
import os
import sys

import uvloop


def check() -> None:
    """Exit with the configuration's problems, said plainly, if it has any."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatsite.settings")
    import django
    from django.core.exceptions import ImproperlyConfigured
    from django.core.management import call_command
    from django.core.management.base import SystemCheckError

    try:
        django.setup()
        call_command("check", "--database", "default", "--fail-level", "ERROR")
    except ImproperlyConfigured as exc:
        sys.exit(f"Configuration error: {exc}")
    except SystemCheckError as exc:
        sys.exit(str(exc))


def main() -> None:
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    check()
    from chat import metrics

    metrics.COLLECTOR_PAUSES.install()
    from daphne.cli import CommandLineInterface

    sys.argv[0] = "daphne"
    CommandLineInterface.entrypoint()


if __name__ == "__main__":
    main()
