"""What the benchmark runs against: the simulator, daphne workers, their databases.

Two configurations: one daphne worker on the in-memory channel layer and SQLite, and
two workers on Redis and PostgreSQL. Workers are started fresh for every phase so each
phase's CPU and memory are its own; the database (users, sessions) lives for the whole
configuration. Process CPU and memory come from /proc.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.servers import ROOT, app_env, free_port, manage, stop_process, wait_for_port

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
POSTGRES_ADMIN_URL = os.environ.get("BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/9")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


@dataclass
class Simulator:
    """The simulator in its own process; what it recorded of every request, title ones too."""

    url: str
    process: subprocess.Popen

    def _call(self, method: str, path: str) -> Any:
        data = b"" if method == "POST" else None
        request = urllib.request.Request(f"{self.url}{path}", method=method, data=data)
        with urllib.request.urlopen(request, timeout=120) as response:
            return json.loads(response.read())

    def requests(self) -> list[dict[str, Any]]:
        return self._call("GET", "/_sim/requests")

    def reset(self) -> None:
        self._call("POST", "/_sim/reset")


@contextlib.contextmanager
def start_simulator(tps: float) -> Iterator[Simulator]:
    port = free_port()
    command = [sys.executable, "-m", "chat.simulator", "--port", str(port), "--tps", f"{tps:g}"]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL)
    try:
        wait_for_port(port, process)
        yield Simulator(f"http://127.0.0.1:{port}", process)
    finally:
        stop_process(process)


@dataclass
class Worker:
    port: int
    process: subprocess.Popen
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cpu(self) -> float:
        return cpu_seconds(self.process.pid)

    def rss(self) -> int:
        return rss_bytes(self.process.pid)

    def errors(self) -> int:
        """Tracebacks and ERROR lines in this worker's log."""
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return sum(1 for line in text.splitlines() if "Traceback" in line or " ERROR " in line)


@dataclass
class Config:
    """One way to serve the app: how many workers, on which layer and database."""

    name: str
    label: str
    workers: int
    scaleout: bool
    env: dict[str, str] = field(default_factory=dict)
    database: str = ""

    def prepare(self, var_dir: Path, simulator_url: str, users: int, password: str) -> None:
        var_dir.mkdir(parents=True, exist_ok=True)
        overrides = {"CHAT_LOG_LEVEL": "WARNING"}
        if self.scaleout:
            self.database = f"bench_{os.getpid()}_{uuid.uuid4().hex[:6]}"
            _postgres_admin(f'CREATE DATABASE "{self.database}"')
            base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0]
            overrides |= {
                "DATABASE_URL": f"{base}/{self.database}",
                "REDIS_URL": REDIS_URL,
                "CHANNEL_PREFIX": self.database,  # its keys, removed after the run
            }
        self.env = app_env(var_dir, simulator_url, **overrides)
        manage(self.env, "migrate", "--noinput", "-v0")
        dbprep(self.env, "setup", "--users", str(users), "--password", password)

    def cleanup(self) -> None:
        if self.scaleout and self.database:
            _postgres_admin(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')
            import redis

            client = redis.Redis.from_url(REDIS_URL, socket_timeout=5)
            for key in client.scan_iter(match=f"{self.database}*", count=1000):
                client.delete(key)

    def start_workers(self, log_dir: Path, label: str) -> list[Worker]:
        log_dir.mkdir(parents=True, exist_ok=True)
        workers = []
        for i in range(self.workers):
            port = free_port()
            log = log_dir / f"{label}-worker{i}.log"
            with log.open("w") as out:
                process = subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "chat.serve",
                        "-b",
                        "127.0.0.1",
                        "-p",
                        str(port),
                        "chatsite.asgi:application",
                    ],
                    cwd=ROOT,
                    env=self.env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            workers.append(Worker(port, process, log))
        for worker in workers:
            wait_for_port(worker.port, worker.process)
        return workers


def stop_workers(workers: list[Worker]) -> None:
    for worker in workers:
        stop_process(worker.process)


def configs(names: list[str]) -> list[Config]:
    known = {
        "1w": Config("1w", "1 worker, in-memory layer, SQLite", 1, scaleout=False),
        "2w": Config("2w", "2 workers, Redis layer, PostgreSQL", 2, scaleout=True),
    }
    return [known[name] for name in names]


def scaleout_available() -> str:
    """Empty when PostgreSQL and Redis answer; else why not."""
    try:
        _postgres_admin("SELECT 1")
    except Exception as exc:
        return f"PostgreSQL at {POSTGRES_ADMIN_URL} did not answer ({exc})"
    try:
        import redis

        redis.Redis.from_url(REDIS_URL, socket_timeout=2).ping()
    except Exception as exc:
        return f"Redis at {REDIS_URL} did not answer ({exc})"
    return ""


def _postgres_admin(statement: str) -> None:
    import psycopg

    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=5) as connection:
        connection.execute(statement)


def dbprep(env: dict[str, str], *args: str, stdin: Any = None) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-m", "bench.dbprep", *args],
        cwd=ROOT,
        env=env,
        input=None if stdin is None else json.dumps(stdin),
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode:
        raise RuntimeError(f"bench.dbprep {' '.join(args)} failed:\n{result.stderr}")
    return json.loads(result.stdout)
