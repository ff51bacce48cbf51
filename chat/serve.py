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

``--workers N`` serves one port from N such workers, one machine's cores used as several
machines' would be (``make run WORKERS=N``): this process checks the configuration, opens
the port's listening sockets and starts and watches the workers (``Supervisor``). A
worker runs a reply for the page that asked for it, in its own process; the workers
share the channel layer (Redis), through which a page hears of replies another worker
runs, and the database (SQLite's one file, or PostgreSQL).
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import gc
import os
import signal
import socket
import subprocess
import sys
import time

import uvloop

PR_SET_PDEATHSIG = 1
# A worker that exits by itself sooner than this after it started is not started again:
# whatever stopped it would stop the next one too.
STEADY_AFTER = 5.0


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


def serve(arguments: list[str]) -> None:
    """One worker: daphne with ``arguments``."""
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    check()
    prepare()
    from daphne.cli import CommandLineInterface

    sys.argv = ["daphne", *arguments]
    CommandLineInterface.entrypoint()


class Supervisor:
    """``count`` workers serving one port, from listening sockets this process opens.

    Each worker is ``python -m chat.serve`` with a socket's descriptor (daphne's
    ``-e fd:…``): its own interpreter, event loop and database thread, so N workers use
    N cores. Each has a socket of its own on the port (``SO_REUSEPORT``), and the kernel
    spreads new connections over them evenly: a socket shared by all would leave a burst
    of them to whichever worker woke first, as Twisted accepts every connection waiting.
    A worker that exits is started again on its socket, which this process keeps open,
    so connections that arrive meanwhile wait for it; SIGTERM or SIGINT here stops them
    all, each draining its replies as a lone worker does (``chat.lifecycle``)."""

    def __init__(self, count: int, host: str, port: int, arguments: list[str]) -> None:
        self.count, self.host, self.port, self.arguments = count, host, port, arguments
        self.sockets: list[socket.socket] = []
        self.workers: list[tuple[subprocess.Popen[bytes], float]] = []
        self.stopping = False

    def run(self) -> int:
        check()
        require_shared_layer(self.count)
        from django.db import connections

        connections.close_all()  # the checks' own: the workers open theirs
        for _ in range(self.count):
            # Port 0 is whichever port the first socket was given.
            port = self.sockets[0].getsockname()[1] if self.sockets else self.port
            try:
                self.sockets.append(socket.create_server((self.host, port), backlog=1024, reuse_port=True))
            except OSError as exc:
                why = os.strerror(exc.errno) if exc.errno else str(exc)
                sys.exit(f"Cannot listen on {self.host}:{port}: {why}.")
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        self.workers = [self._start(listener) for listener in self.sockets]
        pids = ", ".join(str(worker.pid) for worker, _ in self.workers)
        port = self.sockets[0].getsockname()[1]
        print(f"Serving http://{self.host}:{port}/ from {self.count} workers ({pids})", file=sys.stderr)
        status = self._watch()
        self._stop_all()
        return status

    def _start(self, listener: socket.socket) -> tuple[subprocess.Popen[bytes], float]:
        # Twisted's ``fd:`` endpoint adopts an IPv4 socket (it does not parse an address
        # family), which is why ``main`` refuses an IPv6 address. The worker is in a
        # process group of its own, so a terminal's Ctrl-C reaches this process only
        # (each worker is told once, below), and it ends with this process however that ends.
        fd = listener.fileno()
        command = [sys.executable, "-m", "chat.serve", "-e", f"fd:fileno={fd}", *self.arguments]
        worker = subprocess.Popen(command, pass_fds=[fd], process_group=0, preexec_fn=_end_with_parent)
        return worker, time.monotonic()

    def _watch(self) -> int:
        while not self.stopping:
            for i, (worker, started) in enumerate(self.workers):
                if (code := worker.poll()) is None or self.stopping:
                    continue
                # A worker that ends by itself as it starts (its configuration, its database)
                # would do so again; one that was killed is replaced, once a second at most.
                if code >= 0 and time.monotonic() - started < STEADY_AFTER:
                    print(f"Worker {worker.pid} exited with {code} as it started; stopping.", file=sys.stderr)
                    return code or 1
                print(f"Worker {worker.pid} exited with {code}; starting another.", file=sys.stderr)
                time.sleep(max(0.0, started + 1 - time.monotonic()))
                self.workers[i] = self._start(self.sockets[i])
            time.sleep(0.2)
        return 0

    def _stop(self, signum: int, frame: object) -> None:
        self.stopping = True

    def _stop_all(self) -> None:
        for worker, _ in self.workers:
            if worker.poll() is None:
                worker.send_signal(signal.SIGTERM)
        for worker, _ in self.workers:
            worker.wait()


def _end_with_parent() -> None:
    # Linux's PR_SET_PDEATHSIG: SIGTERM when the supervisor dies, even by SIGKILL.
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def require_shared_layer(count: int) -> None:
    """Several workers need a channel layer they share: the in-memory one is per process,
    and a page would never hear of a reply another worker runs."""
    from django.conf import settings

    if "InMemory" in settings.CHANNEL_LAYERS["default"]["BACKEND"]:
        sys.exit(
            f"Configuration error: {count} workers need a channel layer they share, and REDIS_URL "
            "is not set (the in-memory layer reaches one process only). Set REDIS_URL, e.g. "
            "REDIS_URL=redis://127.0.0.1:6379/0, or serve from one worker."
        )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m chat.serve", add_help=False)
    parser.add_argument("--workers", type=int, default=1)
    options, arguments = parser.parse_known_args()
    if options.workers < 1:
        sys.exit(f"--workers must be 1 or more, not {options.workers}.")
    if options.workers == 1:
        serve(arguments)
        return
    # The address is the supervisor's to open; the workers are given its socket.
    binding = argparse.ArgumentParser(add_help=False)
    binding.add_argument("-b", "--bind", dest="host", default="127.0.0.1")
    binding.add_argument("-p", "--port", type=int, default=8000)
    binding.add_argument("-u", "--unix-socket", "--fd", "-e", "--endpoint", dest="elsewhere")
    address, rest = binding.parse_known_args(arguments)
    if address.elsewhere is not None:
        sys.exit("--workers serves a host and port (-b, -p): not a UNIX socket, a descriptor or an endpoint.")
    if ":" in address.host:
        sys.exit(f"--workers serves an IPv4 address; {address.host} is not one.")
    sys.exit(Supervisor(options.workers, address.host, address.port, rest).run())


if __name__ == "__main__":
    main()
