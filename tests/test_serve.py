"""``python -m chat.serve`` is daphne on uvloop's event loop."""

from __future__ import annotations

import subprocess
import sys
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.servers import (
    ROOT,
    SimulatorProcess,
    app_env,
    free_port,
    prepare_database,
    start_app,
    stop_process,
    wait_for_port,
)


def test_the_server_runs_its_application_on_uvloop() -> None:
    port = free_port()
    command = [sys.executable, "-m", "chat.serve", "-b", "127.0.0.1", "-p", str(port), "tests.loop_app:app"]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port, process)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as response:
            assert response.read().decode().startswith("uvloop")
    finally:
        stop_process(process)


def test_a_worker_serves_its_garbage_collectors_pauses(tmp_path: Path, simulator: SimulatorProcess) -> None:
    """``chat_gc_pause_seconds`` on a real worker's /metrics: its young generation's
    passes, timed, as its start allocated."""
    env = app_env(tmp_path, simulator.url, CHAT_METRICS_TOKEN="metrics-token-0123456789")
    prepare_database(env)
    server = start_app(env)
    try:
        request = urllib.request.Request(
            f"{server.url}/metrics", headers={"Authorization": "Bearer metrics-token-0123456789"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            families = {f.name: f for f in text_string_to_metric_families(response.read().decode())}
    finally:
        server.stop()
    samples = {(s.name, s.labels.get("generation"), s.labels.get("le")): s.value
               for s in families["chat_gc_pause_seconds"].samples}  # fmt: skip
    young = samples[("chat_gc_pause_seconds_count", "0", None)]
    assert young > 0 and samples[("chat_gc_pause_seconds_sum", "0", None)] > 0, samples
    assert samples[("chat_gc_pause_seconds_bucket", "0", "+Inf")] == young, samples
