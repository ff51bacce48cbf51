"""Clients of a worker that are not a browser: a logged-in HTTP session, and a websocket
that applies the server's frames to the replies the way the page's htmx would."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from chat.markdown import reply_html
from tests.frames import Body, Watched, body_in
from tests.servers import PASSWORD, SimulatorProcess, wait_until

ACTIVE = {"pending", "streaming"}
ARTICLE = re.compile(
    r'<article id="message-(\d+)"[^>]*data-role="assistant"[^>]*data-status="(\w+)"[^>]*>(.*?)</article>',
    re.S,
)


class CountingConnection(ClientConnection):
    """A websocket client connection that counts the bytes it reads off the socket."""

    received = 0

    def data_received(self, data: bytes) -> None:
        self.received += len(data)
        super().data_received(data)


def upstream_request(sim: SimulatorProcess, message: str) -> dict[str, Any]:
    """The simulator's record of the reply to ``message``.

    The first one: a conversation's title is asked for afterwards with the same message.
    """
    return wait_until(lambda: next((r for r in sim.requests() if r["prompt"] == message), None))


@dataclass
class Session:
    """alice's cookies; they hold for every worker, since all share one database."""

    cookies: dict[str, str]

    @property
    def cookie_header(self) -> str:
        return "; ".join(f"{name}={value}" for name, value in self.cookies.items())

    def post(self, base_url: str, path: str) -> httpx.Response:
        headers = {"Cookie": self.cookie_header, "X-CSRFToken": self.cookies["csrftoken"]}
        return httpx.post(f"{base_url}{path}", headers=headers, follow_redirects=False, timeout=10)

    def new_conversation(self, base_url: str) -> int:
        response = self.post(base_url, "/conversations/new/")
        assert response.status_code == 302, response.text
        return int(response.headers["location"].strip("/").rsplit("/", 1)[-1])


def log_in(base_url: str, username: str = "alice") -> Session:
    with httpx.Client(base_url=base_url, timeout=10) as client:
        form = client.get("/accounts/login/").text
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form)
        assert token, form
        response = client.post(
            "/accounts/login/",
            data={"username": username, "password": PASSWORD, "csrfmiddlewaretoken": token.group(1)},
        )
        assert response.status_code == 302, response.text
        return Session(dict(client.cookies))


class ReplyView:
    """One reply as a page holds it: its body frame by frame while it streams (every state
    it had), then the final article."""

    def __init__(self, reply_id: int) -> None:
        self.reply_id = reply_id
        self.status = "pending"
        self.page = Watched(reply_id)
        self.final: Body | None = None
        self.snapshots = 0

    @property
    def shown(self) -> int:
        """How many characters of the reply the page shows."""
        body = self.page.body
        return (body.shown or 0) if body else 0

    def shows(self, text: str) -> bool:
        """The page shows exactly ``text``, formatted."""
        body = self.page.body
        return body is not None and body.shown == len(text) and body.html == reply_html(text, self.dom_id)

    def ended_as(self, text: str) -> bool:
        """The final article's body is ``text``, formatted as it streamed."""
        return self.final is not None and self.final.html == reply_html(text, self.dom_id)

    def drawn_from(self, text: str) -> bool:
        return self.page.drawn_from(text)

    @property
    def dom_id(self) -> str:
        return f"message-{self.reply_id}"


class ChatSocket:
    """A conversation's websocket, read in the background into ``replies``."""

    def __init__(self, websocket: ClientConnection) -> None:
        self.websocket = websocket
        self.replies: dict[int, ReplyView] = {}
        self.frames = 0
        self.changed = asyncio.Event()
        self.reader = asyncio.create_task(self._read())

    @classmethod
    async def open(cls, base_url: str, session: Session, conversation_id: int) -> ChatSocket:
        websocket = await connect(
            f"ws{base_url.removeprefix('http')}/ws/conversations/{conversation_id}/",
            additional_headers={"Cookie": session.cookie_header},
            origin=base_url,
            open_timeout=10,
        )
        return cls(websocket)

    @property
    def close_code(self) -> int | None:
        return self.websocket.close_code

    async def send(self, message: str) -> None:
        await self.websocket.send(json.dumps({"message": message, "client_id": uuid.uuid4().hex}))

    async def stop(self) -> None:
        await self.websocket.send(json.dumps({"action": "stop"}))

    async def close(self) -> None:
        await self.websocket.close()
        await self.reader

    async def wait_for(self, predicate: Any, within: float = 20) -> Any:
        async with asyncio.timeout(within):
            while not (value := predicate()):
                if self.reader.done():
                    raise AssertionError(f"the socket closed ({self.close_code}) before the condition held")
                self.changed.clear()
                await self.changed.wait()
            return value

    async def first_reply(self, within: float = 20) -> int:
        return await self.wait_for(lambda: min(self.replies, default=None), within)

    async def _read(self) -> None:
        try:
            async for frame in self.websocket:
                self.frames += 1
                self.apply(str(frame))
                self.changed.set()
        except ConnectionClosed:
            pass
        finally:
            self.changed.set()

    def apply(self, frame: str) -> None:
        for reply_id, status, inner in ARTICLE.findall(frame):
            reply = self.replies.setdefault(int(reply_id), ReplyView(int(reply_id)))
            reply.status = status
            if status not in ACTIVE:
                reply.final = body_in(inner, reply.reply_id)
        for reply in self.replies.values():
            if reply.status in ACTIVE:
                if f'<div id="{reply.dom_id}-body" hx-swap-oob="innerHTML"' in frame:
                    reply.snapshots += 1
                reply.page.see(frame)
