"""``python -m chat.serve``: daphne, on uvloop's event loop.

daphne makes its event loop when its server module is imported, and Twisted's asyncio
reactor runs on it; with uvloop's policy installed first, that loop is uvloop's, which
runs the relay's I/O and callbacks in C (docs/benchmark.md). Arguments are daphne's.
"""

from __future__ import annotations

import asyncio
import sys

import uvloop


def main() -> None:
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    from daphne.cli import CommandLineInterface

    sys.argv[0] = "daphne"
    CommandLineInterface.entrypoint()


if __name__ == "__main__":
    main()
