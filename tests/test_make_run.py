"""`make run` with bad configuration stops at once, saying what is wrong: no traceback,
no server started to answer 500 later. The real command, as an operator runs it."""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.servers import ROOT, free_port

TOML_ERROR = '[[providers]]\nname = "p"\ndialect = "openai-chat"\nbase_url = https://p.example\n'
NOPE = '[[providers]]\nname = "p"\ndialect = "nope"\nbase_url = "https://p.example"\nmodels = ["m"]\n'


def make_run(tmp_path, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {
        key: value for key, value in os.environ.items() if key not in {"REDIS_URL", "DATABASE_URL"}
    }
    environment.update(CHAT_VAR_DIR=str(tmp_path / "var"), PORT=str(free_port()), DEMO_PORT=str(free_port()))
    environment.update(env)
    return subprocess.run(
        ["make", "--no-print-directory", "run"],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize(
    ("setting", "says"),
    [
        ("missing-file", "CHAT_PROVIDERS_FILE={path}: there is no such file."),
        ("toml-error", "the providers file is not valid TOML: Invalid value (at line 4, column 12)"),
        (
            "unknown-dialect",
            "unknown dialect 'nope'; known: muapi, openai-chat, openai-responses, text-delta",
        ),
        ("redis-closed", "REDIS_URL=redis://:***@127.0.0.1:{port}/0: Redis did not answer"),
        ("frame-interval", "Configuration error: CHAT_FRAME_INTERVAL='abc': expected a number, like 0.02"),
        (
            "database-closed",
            "DATABASE_URL=postgres://chat:***@127.0.0.1:{port}/chat: the database did not answer",
        ),
    ],
)
def test_make_run_refuses_bad_configuration_with_a_message_and_no_traceback(
    tmp_path, setting: str, says: str
) -> None:
    path, port = tmp_path / "providers.toml", free_port()
    env = {
        "missing-file": {"CHAT_PROVIDERS_FILE": str(path)},
        "toml-error": {"CHAT_PROVIDERS_FILE": str(path)},
        "unknown-dialect": {"CHAT_PROVIDERS_FILE": str(path)},
        "redis-closed": {"REDIS_URL": f"redis://:hunter2@127.0.0.1:{port}/0"},
        "frame-interval": {"CHAT_FRAME_INTERVAL": "abc"},
        "database-closed": {"DATABASE_URL": f"postgres://chat:hunter2@127.0.0.1:{port}/chat"},
    }[setting]
    if setting == "toml-error":
        path.write_text(TOML_ERROR)
    elif setting == "unknown-dialect":
        path.write_text(NOPE)

    result = make_run(tmp_path, **env)

    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert says.format(path=path, port=port) in output
    assert "Traceback" not in output and "hunter2" not in output
    assert "Open http" not in output  # it never got as far as serving
