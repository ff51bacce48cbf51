"""Real servers for the tests: the simulator and the app under daphne, on loopback ports."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "a-long-test-password"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listened on port {port} within {timeout} s")


def wait_until(predicate: Callable[[], Any], timeout: float = 10, interval: float = 0.02) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s")


def stop_process(process: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def is_title_request(record: dict[str, Any]) -> bool:
    # After a conversation's first reply the app asks the model for a title (chat.titles).
    from chat.titles import TITLE_INSTRUCTION

    return TITLE_INSTRUCTION in json.dumps(record["body"])


@dataclass
class SimulatorProcess:
    url: str
    process: subprocess.Popen

    def _call(self, method: str, path: str) -> Any:
        request = urllib.request.Request(
            f"{self.url}{path}", method=method, data=b"" if method == "POST" else None
        )
        with urllib.request.urlopen(request, timeout=120) as response:
            return json.loads(response.read())

    def all_requests(self) -> list[dict[str, Any]]:
        """Every request it served, oldest first, the app's title requests too."""
        return self._call("GET", "/_sim/requests")

    def requests(self) -> list[dict[str, Any]]:
        """The requests for replies, oldest first; the app's title requests are left out."""
        return [r for r in self.all_requests() if not is_title_request(r)]

    def title_requests(self) -> list[dict[str, Any]]:
        return [r for r in self.all_requests() if is_title_request(r)]

    def reset(self) -> None:
        self._call("POST", "/_sim/reset")

    def last(self) -> dict[str, Any]:
        return wait_until(lambda: (self.requests() or [None])[-1])


@contextlib.contextmanager
def start_simulator(
    tps: float = 50, api_key_env: str = "", *, quiet: bool = False
) -> Iterator[SimulatorProcess]:
    """The simulator in a process of its own, for the tests and the benchmark."""
    port = free_port()
    command = [sys.executable, "-m", "chat.simulator", "--port", str(port), "--tps", f"{tps:g}"]
    if api_key_env:
        command += ["--api-key-env", api_key_env]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL if quiet else None)
    try:
        wait_for_port(port, process)
        yield SimulatorProcess(f"http://127.0.0.1:{port}", process)
    finally:
        stop_process(process)


@dataclass
class AppServer:
    """A daphne worker serving the app, with the environment it was started with."""

    url: str
    env: dict[str, str]
    process: subprocess.Popen
    port: int
    extra: dict[str, Any] = field(default_factory=dict)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        stop_process(self.process, sig)


def app_env(var_dir: Path, simulator_url: str, **overrides: str) -> dict[str, str]:
    env = {
        **os.environ,
        "CHAT_VAR_DIR": str(var_dir),
        "DATABASE_URL": f"sqlite:///{var_dir / 'db.sqlite3'}",
        "CHAT_DEMO_BASE_URL": f"{simulator_url}/v1",
        "DJANGO_SECRET_KEY": "test-secret-key-that-is-long-enough-for-django-checks",
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("REDIS_URL", None)
    env.update(overrides)
    return env


def manage(env: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, check=False
    )
    if result.returncode:
        raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


def prepare_database(env: dict[str, str], users: tuple[str, ...] = ("alice", "bob")) -> None:
    """Migrate, and create ordinary (non-staff) users with the test password."""
    manage(env, "migrate", "--noinput", "-v0")
    create = "from django.contrib.auth.models import User\n" + "".join(
        f"User.objects.filter(username={u!r}).exists() or "
        f"User.objects.create_user({u!r}, password={PASSWORD!r})\n"
        for u in users
    )
    manage(env, "shell", "-c", create)


def start_app(env: dict[str, str], port: int | None = None, log: Path | None = None) -> AppServer:
    """Start daphne; with ``log``, everything it prints goes to that file."""
    port = port or free_port()
    output = log.open("w") if log else None
    process = subprocess.Popen(
        [sys.executable, "-m", "chat.serve", "-b", "127.0.0.1", "-p", str(port), "chatsite.asgi:application"],
        cwd=ROOT,
        env=env,
        stdout=output,
        stderr=subprocess.STDOUT if output else None,
    )
    wait_for_port(port, process)
    return AppServer(f"http://127.0.0.1:{port}", env, process, port)
