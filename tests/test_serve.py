"""``python -m chat.serve`` is daphne on uvloop's event loop, started warm and frozen."""

from __future__ import annotations

import json
import os
import socket
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


def test_a_worker_compiles_what_first_replies_need_and_freezes_its_startup_heap() -> None:
    """Before serving, a worker draws a sample reply (templates, both markdown parsers,
    the common languages' lexers) and moves every object made so far out of the garbage
    collector's reach: a full pass then walks only what the worker made since."""
    script = (
        "import gc, json, os\n"
        "os.environ['DJANGO_SETTINGS_MODULE'] = 'chatsite.settings'\n"
        "from chat import metrics, serve\n"
        "serve.check()\n"
        "serve.prepare()\n"
        "from chat.markdown import _lexer\n"
        "from chat.rendering import WARM_LANGUAGES\n"
        "print(json.dumps({'frozen': gc.get_freeze_count(), 'walked': len(gc.get_objects()),\n"
        "    'lexers': _lexer.cache_info().currsize, 'languages': len(WARM_LANGUAGES),\n"
        "    'timed': metrics.COLLECTOR_PAUSES._callback in gc.callbacks}))\n"
    )
    env = {**os.environ, "DJANGO_SECRET_KEY": "test-secret-key-that-is-long-enough-for-django-checks"}
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    state = json.loads(result.stdout.strip().splitlines()[-1])
    # Django, the app and their libraries: far more than the few a pass still walks.
    assert state["frozen"] > 50_000 and state["walked"] < state["frozen"] / 10, state
    assert state["lexers"] >= state["languages"], state
    assert state["timed"], state


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


def serve_workers(env: dict[str, str], *arguments: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "chat.serve", "--workers", *arguments]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False)


def test_several_workers_without_a_shared_channel_layer_are_refused_at_start(
    tmp_path: Path, simulator: SimulatorProcess
) -> None:
    """Each worker's in-memory layer reaches its own process only: a page on one worker
    would never hear of a reply another runs. ``make run WORKERS=2`` without REDIS_URL
    stops before it serves, saying what to set."""
    env = app_env(tmp_path, simulator.url)
    prepare_database(env)
    port = free_port()
    result = serve_workers(env, "2", "-b", "127.0.0.1", "-p", str(port), "chatsite.asgi:application")
    assert result.returncode != 0
    assert "2 workers need a channel layer they share, and REDIS_URL is not set" in result.stderr
    assert "Traceback" not in result.stderr
    # Refused before anything listened on the port.
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0


def test_workers_serve_an_ipv4_host_and_port_and_nothing_else(tmp_path: Path) -> None:
    env = app_env(tmp_path, "http://127.0.0.1:9")
    for arguments, said in [
        (["0", "chatsite.asgi:application"], "--workers must be 1 or more, not 0."),
        (["2", "-u", str(tmp_path / "chat.sock"), "chatsite.asgi:application"], "not a UNIX socket"),
        (["2", "-b", "::1", "-p", "8000", "chatsite.asgi:application"], "an IPv4 address; ::1 is not one"),
    ]:
        result = serve_workers(env, *arguments)
        assert result.returncode != 0 and said in result.stderr, (arguments, result.stderr)
