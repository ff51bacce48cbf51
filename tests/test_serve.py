"""``python -m chat.serve`` is daphne on uvloop's event loop."""

from __future__ import annotations

import subprocess
import sys
import urllib.request

from tests.servers import ROOT, free_port, stop_process, wait_for_port


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
