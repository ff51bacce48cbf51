"""What the benchmark runs against: the simulator, daphne workers, their databases.

Three configurations: one daphne worker on the in-memory channel layer and SQLite; two
workers on Redis and PostgreSQL, each on a port of its own; and two workers sharing one
port (``chat.serve --workers 2``, as ``make run WORKERS=2`` serves) on Redis and SQLite.
With ``--before REF`` a fourth, the first one run from a git worktree of an earlier
commit. Workers are started fresh for every phase so each phase's CPU and memory are its
own; the database (users, sessions) lives for the whole configuration. Process CPU and
memory come from /proc.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tests.servers import ROOT, SimulatorProcess, app_env, free_port, stop_process, wait_for_port
from tests.servers import start_simulator as start_test_simulator

DBPREP = Path(__file__).resolve().parent / "dbprep.py"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
POSTGRES_ADMIN_URL = os.environ.get("BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/9")
# The workers' /metrics, read before and after each relay phase.
METRICS_TOKEN = "bench-metrics-token-" + uuid.uuid4().hex


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def machine_cpu() -> tuple[float, float]:
    """CPU seconds the whole machine has been busy so far (every process, the kernel's
    interrupts included), and the seconds the hypervisor took from it (steal)."""
    user, nice, system, _idle, _iowait, irq, softirq, steal = (
        int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]
    )
    return (user + nice + system + irq + softirq) / CLOCK_TICKS, steal / CLOCK_TICKS


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


# The simulator is the tests' own (tests.servers): the benchmark reads every request it
# served, the app's title requests too (``all_requests``).
Simulator = SimulatorProcess


@contextlib.contextmanager
def start_simulator(tps: float) -> Iterator[Simulator]:
    with start_test_simulator(tps, quiet=True) as simulator:
        yield simulator


@dataclass
class Worker:
    port: int
    process: subprocess.Popen
    log: Path
    # One of the workers of a ``chat.serve --workers`` (``process``, which only watches
    # them): its own pid. They share ``port``, so its ``/metrics`` are read until it is
    # the one that answers.
    own_pid: int | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.own_pid or self.process.pid

    def cpu(self) -> float:
        return cpu_seconds(self.pid)

    def rss(self) -> int:
        return rss_bytes(self.pid)

    def scrape(self) -> dict[str, Any]:
        """What the benchmark reads of the worker's ``/metrics`` so far (an earlier tree
        that does not serve or keep them: empty).

        ``trips``: by database trip (``chat.database``), the seconds waited for its
        database thread and held on it, and how many. ``pauses``: by generation, the
        garbage collector's passes (``chat.metrics.CollectorPauses``): how many, their
        seconds, and the cumulative count under each bucket's bound."""
        for _ in range(200):
            try:
                pid, text = read_metrics(self.url)
            except urllib.error.HTTPError:  # a tree from before /metrics
                return {}
            if self.own_pid in (None, pid):
                break
        else:
            raise RuntimeError(f"worker {self.own_pid} never answered on port {self.port}")
        trips: dict[str, dict[str, float]] = {}
        pauses: dict[str, dict[str, Any]] = {}
        for family in text_string_to_metric_families(text):
            if family.name == "chat_gc_pause_seconds":
                for sample in family.samples:
                    into = pauses.setdefault(sample.labels["generation"], {"buckets": {}})
                    if sample.name.endswith("_bucket"):
                        into["buckets"][sample.labels["le"]] = sample.value
                    else:
                        into[sample.name.rsplit("_", 1)[1]] = sample.value  # "count", "sum"
                continue
            if family.name not in ("chat_database_wait_seconds", "chat_database_trip_seconds"):
                continue
            held = family.name == "chat_database_trip_seconds"
            for sample in family.samples:
                if sample.name.endswith("_sum"):
                    kind = "held" if held else "waited"
                elif sample.name.endswith("_count") and held:
                    kind = "trips"
                else:
                    continue
                trips.setdefault(sample.labels["trip"], {})[kind] = sample.value
        return {"trips": trips, "pauses": pauses}


def read_metrics(url: str) -> tuple[int | None, str]:
    """A worker's ``/metrics``, on a connection of its own, and which worker answered."""
    request = urllib.request.Request(f"{url}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    with urllib.request.urlopen(request, timeout=30) as response:
        pid = response.headers.get("X-Chat-Worker")
        return (int(pid) if pid else None), response.read().decode()


def log_errors(workers: list[Worker]) -> int:
    """Tracebacks and ERROR lines in the workers' logs (one log for a ``--workers``'s)."""
    count = 0
    for log in dict.fromkeys(worker.log for worker in workers):
        text = log.read_text(errors="replace") if log.exists() else ""
        count += sum(1 for line in text.splitlines() if "Traceback" in line or " ERROR " in line)
    return count


@dataclass
class Config:
    """One way to serve the app: how many workers, on which layer and database, from
    which tree (``root``: this checkout, or a worktree of an earlier commit)."""

    name: str
    label: str
    workers: int
    scaleout: bool
    # The workers of one ``chat.serve --workers`` on one port, on Redis and SQLite.
    one_port: bool = False
    root: Path = ROOT
    env: dict[str, str] = field(default_factory=dict)
    database: str = ""

    @property
    def serve(self) -> list[str]:
        """How this tree serves the app: ``chat.serve`` (daphne on uvloop) where it has
        one, plain daphne in older trees."""
        module = "chat.serve" if (self.root / "chat" / "serve.py").exists() else "daphne"
        return [sys.executable, "-m", module]

    def prepare(self, var_dir: Path, simulator_url: str, users: int, password: str) -> None:
        var_dir.mkdir(parents=True, exist_ok=True)
        overrides = {"CHAT_LOG_LEVEL": "WARNING", "CHAT_METRICS_TOKEN": METRICS_TOKEN}
        if self.scaleout:
            self.database = f"bench_{os.getpid()}_{uuid.uuid4().hex[:6]}"
            _postgres_admin(f'CREATE DATABASE "{self.database}"')
            base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0]
            overrides |= {
                "DATABASE_URL": f"{base}/{self.database}",
                "REDIS_URL": REDIS_URL,
                "CHANNEL_PREFIX": self.database,  # its keys, removed after the run
            }
        elif self.one_port:
            self.database = f"bench_{os.getpid()}_{uuid.uuid4().hex[:6]}"  # its keys' prefix
            overrides |= {"REDIS_URL": REDIS_URL, "CHANNEL_PREFIX": self.database}
        self.env = app_env(var_dir, simulator_url, **overrides)
        manage(self.root, self.env, "migrate", "--noinput", "-v0")
        dbprep(self.env, "setup", "--users", str(users), "--password", password, root=self.root)

    def cleanup(self) -> None:
        if self.scaleout and self.database:
            _postgres_admin(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')
        if (self.scaleout or self.one_port) and self.database:
            import redis

            client = redis.Redis.from_url(REDIS_URL, socket_timeout=5)
            for key in client.scan_iter(match=f"{self.database}*", count=1000):
                client.delete(key)

    def start_workers(self, log_dir: Path, label: str) -> list[Worker]:
        log_dir.mkdir(parents=True, exist_ok=True)
        if self.one_port:
            return self._start_on_one_port(log_dir / f"{label}-workers.log")
        workers = []
        for i in range(self.workers):
            port = free_port()
            log = log_dir / f"{label}-worker{i}.log"
            with log.open("w") as out:
                process = subprocess.Popen(
                    [*self.serve, "-b", "127.0.0.1", "-p", str(port), "chatsite.asgi:application"],
                    cwd=self.root,
                    env=self.env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            workers.append(Worker(port, process, log))
        for worker in workers:
            wait_for_port(worker.port, worker.process)
        return workers

    def _start_on_one_port(self, log: Path) -> list[Worker]:
        port = free_port()
        with log.open("w") as out:
            process = subprocess.Popen(
                [*self.serve, "--workers", str(self.workers), "-b", "127.0.0.1", "-p", str(port),
                 "chatsite.asgi:application"],
                cwd=self.root, env=self.env, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        wait_for_port(port, process)
        # Serving once each worker has answered: the socket takes connections as soon as
        # the supervisor opens it, before its workers have started.
        url, answered = f"http://127.0.0.1:{port}", set()
        deadline = time.monotonic() + 60
        while len(answered) < self.workers:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"chat.serve --workers {self.workers} did not start; see {log}")
            answered.add(read_metrics(url)[0])
        return [Worker(port, process, log, own_pid=pid) for pid in sorted(answered)]


def stop_workers(workers: list[Worker]) -> None:
    for worker in workers:
        stop_process(worker.process)


def configs(names: list[str], before: tuple[str, Path] | None = None) -> list[Config]:
    """The configurations named, in order; with ``before`` (a ref and its worktree),
    "1w-before" right after "1w" (or last, without "1w")."""
    known = {
        "1w": Config("1w", "1 worker, in-memory layer, SQLite", 1, scaleout=False),
        "2w": Config("2w", "2 workers, Redis layer, PostgreSQL", 2, scaleout=True),
        "2w-shared": Config(
            "2w-shared", "2 workers on one port, Redis layer, SQLite", 2, scaleout=False, one_port=True
        ),
    }
    chosen = [known[name] for name in names]
    if before is not None:
        ref, tree = before
        earlier = Config("1w-before", f"1 worker, in-memory layer, SQLite, at {ref}", 1, False, root=tree)
        at = next((i + 1 for i, c in enumerate(chosen) if c.name == "1w"), len(chosen))
        chosen.insert(at, earlier)
    return chosen


@contextlib.contextmanager
def worktree(ref: str) -> Iterator[tuple[str, Path]]:
    """A detached git worktree of ``ref`` in a temporary directory, removed afterwards;
    yields the commit it resolved to and the tree's path."""
    commit = _git("rev-parse", "--verify", f"{ref}^{{commit}}").strip()
    with tempfile.TemporaryDirectory(prefix="bench-before-") as tmp:
        tree = Path(tmp) / "tree"
        _git("worktree", "add", "--detach", str(tree), commit)
        try:
            yield commit, tree
        finally:
            with contextlib.suppress(RuntimeError):
                _git("worktree", "remove", "--force", str(tree))


def _git(*args: str) -> str:
    result = subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=False)
    if result.returncode:
        raise RuntimeError(f"git {' '.join(args)} failed:\n{result.stderr}")
    return result.stdout


def manage(root: Path, env: dict[str, str], *args: str) -> str:
    """``manage.py`` of the tree at ``root`` (its own migrations), in that tree."""
    result = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=root, env=env, capture_output=True, text=True, check=False
    )
    if result.returncode:
        raise RuntimeError(f"{root}/manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


def services_missing(config: Config) -> str:
    """Empty when the services ``config`` runs on answer (PostgreSQL and Redis for 2w,
    Redis for 2w-shared); else why not."""
    if config.scaleout:
        try:
            _postgres_admin("SELECT 1")
        except Exception as exc:
            return f"PostgreSQL at {POSTGRES_ADMIN_URL} did not answer ({exc})"
    if not (config.scaleout or config.one_port):
        return ""
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


def dbprep(env: dict[str, str], *args: str, stdin: Any = None, root: Path = ROOT) -> dict[str, Any]:
    """This checkout's ``bench/dbprep.py`` against the app of the tree at ``root``: run in
    that tree, so ``chat`` and ``chatsite`` are imported from it (an earlier commit's
    bench, if it had one, is not used)."""
    runner = "import runpy, sys; runpy.run_path(sys.argv.pop(1), run_name='__main__')"
    result = subprocess.run(
        [sys.executable, "-c", runner, str(DBPREP), *args],
        cwd=root,
        env=env,
        input=None if stdin is None else json.dumps(stdin),
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode:
        raise RuntimeError(f"bench.dbprep {' '.join(args)} failed:\n{result.stderr}")
    return json.loads(result.stdout)
