"""The statements written out as SQL (``chat.sql``), on PostgreSQL.

``tests/test_statements.py`` compares each with the ORM query it replaced; the suite runs
it on SQLite, and this runs it again, as a pytest of its own, with ``DATABASE_URL`` on the
scale-out PostgreSQL (pytest-django makes and drops a test database there).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.scaleout

ROOT = Path(__file__).resolve().parents[2]


def test_the_written_out_statements_read_and_write_what_the_orm_would_on_postgresql(
    services, tmp_path
) -> None:
    env = {
        **os.environ,
        "DATABASE_URL": services.database_url("chat_statements"),
        "CHAT_VAR_DIR": str(tmp_path),
    }
    env.pop("REDIS_URL", None)
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--create-db",
            "tests/test_statements.py",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert " passed" in run.stdout and "skipped" not in run.stdout
