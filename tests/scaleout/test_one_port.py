"""``python -m chat.serve --workers 2`` (``make run WORKERS=2``): two workers serve one
port on one machine, sharing Redis and one SQLite file; a worker that dies is replaced,
and stopping the supervisor stops them all."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from tests.scaleout.clients import ACTIVE, ChatSocket, Session
from tests.scaleout.conftest import ASGI_APPLICATION, Services, SqliteDatabase
from tests.scaleout.test_load import create_people, first_requests
from tests.servers import ROOT, SimulatorProcess, app_env, free_port, stop_process, wait_for_port, wait_until

pytestmark = pytest.mark.scaleout

METRICS_TOKEN = "one-port-metrics-token"


def two_workers_on(port: int) -> list[str]:
    """``make run WORKERS=2``'s command."""
    return [sys.executable, "-m", "chat.serve", "--workers", "2", "-b", "127.0.0.1", "-p", str(port),
            ASGI_APPLICATION]  # fmt: skip


@dataclass
class OnePort:
    url: str
    env: dict[str, str]
    process: subprocess.Popen
    db: SqliteDatabase

    def answering(self, count: int, within: float = 30) -> set[int]:
        """The workers that answer on the port, once ``count`` of them have: each request
        goes on a connection of its own, which the kernel gives to one of them."""
        seen: set[int] = set()

        def all_answered() -> bool:
            request = urllib.request.Request(
                f"{self.url}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}
            )
            try:
                with urllib.request.urlopen(request, timeout=5) as response:
                    seen.add(int(response.headers["X-Chat-Worker"]))
            except OSError:
                pass  # a worker starting again: its socket waits for it
            return len(seen) >= count

        wait_until(all_answered, timeout=within)
        return seen


@pytest.fixture
def one_port(
    services: Services, sqlite_template: Path, simulator: SimulatorProcess, tmp_path: Path
) -> Iterator[OnePort]:
    (tmp_path / "db.sqlite3").write_bytes(sqlite_template.read_bytes())
    prefix = f"chat-test-{secrets.token_hex(6)}"
    env = app_env(
        tmp_path,
        simulator.url,
        REDIS_URL=services.redis_url,
        CHANNEL_PREFIX=prefix,
        CHAT_METRICS_TOKEN=METRICS_TOKEN,
    )
    port = free_port()
    process = subprocess.Popen(two_workers_on(port), cwd=ROOT, env=env)
    try:
        wait_for_port(port, process)
        yield OnePort(f"http://127.0.0.1:{port}", env, process, SqliteDatabase(tmp_path / "db.sqlite3"))
    finally:
        stop_process(process)
        keys = redis.Redis.from_url(services.redis_url)
        for key in keys.scan_iter(f"{prefix}*"):
            keys.delete(key)


def ended(chat: ChatSocket) -> bool:
    return bool(chat.replies) and all(reply.status not in ACTIVE for reply in chat.replies.values())


async def test_two_workers_on_one_port_share_its_pages_and_each_reply_is_exact(
    one_port: OnePort, sim: SimulatorProcess
) -> None:
    workers = await asyncio.to_thread(one_port.answering, 2)
    assert one_port.process.pid not in workers

    people = await asyncio.to_thread(create_people, one_port.env, 30)
    sockets = await asyncio.gather(
        *(ChatSocket.open(one_port.url, Session({"sessionid": key}), pk) for key, pk in people)
    )
    messages = [f"One port {number} [sim tokens=30 tps=100]" for number in range(len(people))]
    await asyncio.gather(*(chat.send(message) for chat, message in zip(sockets, messages, strict=True)))
    await asyncio.gather(*(chat.wait_for(lambda c=chat: ended(c)) for chat in sockets))

    records = first_requests(sim)
    saved = {
        row["conversation_id"]: row
        for row in one_port.db.rows(
            "SELECT conversation_id, status, content, worker_channel FROM chat_message"
            " WHERE role = 'assistant'"
        )
    }
    for chat, message, (_, conversation) in zip(sockets, messages, people, strict=True):
        expected = records[message]["text"]
        assert saved[conversation]["status"] == "complete"
        assert saved[conversation]["content"] == expected
        (page,) = chat.replies.values()
        assert page.ended_as(expected) and page.drawn_from(expected)
    await asyncio.gather(*(chat.close() for chat in sockets))
    # The kernel spread the pages over both workers, and each ran the replies of its own.
    assert len({row["worker_channel"] for row in saved.values()}) == 2


def test_a_worker_that_dies_is_replaced_and_stopping_the_supervisor_stops_every_worker(
    one_port: OnePort,
) -> None:
    first = one_port.answering(2)
    killed = min(first)
    os.kill(killed, signal.SIGKILL)
    # Its socket stays open in the supervisor: the port answers throughout, and the
    # worker started in its place answers on it.
    now = one_port.answering(2, within=60)
    (replacement,) = now - first
    assert killed not in now

    one_port.process.send_signal(signal.SIGTERM)
    assert one_port.process.wait(30) == 0
    for pid in (first | {replacement}) - {killed}:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_the_benchmark_measures_two_workers_on_one_port(
    services: Services, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``make bench``'s ``2w-shared``: the workers ``make run WORKERS=2`` would start, each
    found through the shared port before the phase (``bench.stack``), in small."""
    import bench.stack
    from bench.run import Options, run_benchmark

    monkeypatch.setattr(bench.stack, "REDIS_URL", services.redis_url)
    options = Options(
        ks=[2], configs=["2w-shared"], tokens=40, long_chars=[], fast_k=0, min_replies=4,
        profile_k=0, probe=False, out=tmp_path, log=lambda *_: None,
    )  # fmt: skip
    run_benchmark(options)

    [config] = json.loads((tmp_path / "latest.json").read_text())["configs"]
    assert config["name"] == "2w-shared" and "skipped" not in config, config
    [phase] = config["phases"]
    # Every fourth client presses Stop: the others read to the end.
    assert phase["replies"] == 4 and phase["completed"] + phase["stopped"] == 4, phase
    assert phase["integrity_mismatches"] == 0, phase["mismatch_examples"]
    assert phase["worker_log_errors"] == 0
    # Both workers' CPU and database threads, read through the one port.
    assert phase["cores"]["workers"] > 0 and phase["database_thread"]["trips_per_reply"] >= 2, phase
    assert "| 2w-shared | 2 | " in (tmp_path / "latest.md").read_text()


def test_a_port_in_use_is_refused_at_start_with_what_holds_it(
    services: Services, simulator: SimulatorProcess, sqlite_template: Path, tmp_path: Path
) -> None:
    (tmp_path / "db.sqlite3").write_bytes(sqlite_template.read_bytes())
    env = app_env(tmp_path, simulator.url, REDIS_URL=services.redis_url)
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        command = two_workers_on(port)
        result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert f"Cannot listen on 127.0.0.1:{port}: Address already in use." in result.stderr
    assert "Traceback" not in result.stderr
