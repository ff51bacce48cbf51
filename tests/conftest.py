"""Shared fixtures: the demo upstream as a real loopback server, and a network guard."""

from __future__ import annotations

import inspect
import ipaddress
import socket

import pytest

from chat import upstream
from chat.providers.config import get_providers
from tests.servers import SimulatorProcess, start_simulator

_real_connect = socket.socket.connect


def _is_local(address: object) -> bool:
    if not isinstance(address, tuple):
        return True  # unix sockets
    host = address[0]
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _guarded_connect(self: socket.socket, address: object) -> None:
    if not _is_local(address):
        raise OSError(f"tests may only reach local servers, not {address!r}")
    return _real_connect(self, address)


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket.socket, "connect", _guarded_connect)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if inspect.iscoroutinefunction(getattr(item, "function", None)):
            item.fixturenames.append("_close_upstream_connections")


@pytest.fixture
async def _close_upstream_connections() -> None:
    """Each async test runs its own event loop: close the connections its client kept alive."""
    yield
    await upstream.close_client()


@pytest.fixture(scope="session", autouse=True)
def _test_database(django_db_setup: None) -> None:
    """Create the test database up front, in sync code: async tests cannot create it."""


@pytest.fixture(scope="session")
def simulator() -> SimulatorProcess:
    with start_simulator() as process:
        yield process


@pytest.fixture
def sim(simulator: SimulatorProcess, settings) -> SimulatorProcess:
    """The simulator, reset, as the app's only provider (the demo)."""
    simulator.reset()
    settings.CHAT_DEMO_BASE_URL = f"{simulator.url}/v1"
    settings.CHAT_PROVIDERS_FILE = ""
    get_providers.cache_clear()
    yield simulator
    get_providers.cache_clear()


@pytest.fixture
def providers_file(sim: SimulatorProcess, settings, tmp_path):
    """Write a providers TOML (``{sim}`` is replaced by the simulator's URL) and use it."""

    def use(text: str) -> None:
        path = tmp_path / "providers.toml"
        path.write_text(text.replace("{sim}", sim.url))
        settings.CHAT_PROVIDERS_FILE = str(path)
        get_providers.cache_clear()

    return use
