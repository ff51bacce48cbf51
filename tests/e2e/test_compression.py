"""Frames travel compressed (permessage-deflate): the browser and the server agree on it.

tests/e2e/test_wire_bytes.py measures what that saves.
"""

from __future__ import annotations

from playwright.sync_api import Page

OPEN_SOCKET = """
(path) => new Promise((resolve, reject) => {
  const socket = new WebSocket(`ws://${location.host}${path}`);
  socket.onopen = () => { resolve(socket.extensions); socket.close(); };
  socket.onerror = () => reject(new Error("the socket did not open"));
})
"""


def test_chromium_and_the_server_agree_on_compressed_frames(page: Page) -> None:
    path = page.url.split("://", 1)[1].split("/", 1)[1].replace("conversations/", "ws/conversations/")

    extensions = page.evaluate(OPEN_SOCKET, f"/{path}")

    assert extensions.startswith("permessage-deflate")
