"""``python -m chat.serve``: daphne, on uvloop's event loop, after the configuration checks.

daphne makes its event loop when its server module is imported, and Twisted's asyncio
reactor runs on it; with uvloop's policy installed first, that loop is uvloop's, which
runs the relay's I/O and callbacks in C (docs/benchmark.md). Before serving, every worker
runs the system checks, the services included (``chat.configuration``): bad
configuration stops it with a message, not a 500 on the first page. Then it compiles what
its first replies would (``chat.rendering.warm_up``) and freezes everything made so far
out of the garbage collector's reach (``gc.freeze``): a full collection stops the event
loop for as long as it takes to walk every object the worker holds, and the ~100,000 of
Django, the app and their libraries never die (docs/benchmark.md, "Full collections").
Arguments are daphne's.
"""

from __future__ import annotations

import asyncio
import gc
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


def prepare() -> None:
    """Load and warm the relay's code, time the collector's pauses, and freeze the heap."""
    # The relay's modules (daphne's reactor is in already: django.setup() imported it).
    from chat import consumers, metrics, rendering  # noqa: F401

    rendering.warm_up()
    metrics.COLLECTOR_PAUSES.install()
    gc.freeze()


def main() -> None:
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    check()
    prepare()
    from daphne.cli import CommandLineInterface

    sys.argv[0] = "daphne"
    CommandLineInterface.entrypoint()


if __name__ == "__main__":
    main()
