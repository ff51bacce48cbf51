"""Clients of a worker that are not a browser: a logged-in HTTP session, and a websocket
that applies the server's frames to the replies the way the page's htmx would."""

from __future__ import annotations

import asyncio
import html
import json
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.servers import PASSWORD, SimulatorProcess, wait_until

ACTIVE = {"pending", "streaming"}
ARTICLE = re.compile(
    r'<article id="message-(\d+)"[^>]*data-role="assistant"[^>]*data-status="(\w+)"[^>]*>(.*?)</article>',
    re.S,
)
BODY = re.compile(r'<div id="message-\d+-body" class="body (plain|markdown)">(.*?)</div>', re.S)
DELTA = re.compile(r'<div hx-swap-oob="beforeend:#message-(\d+)-body">(.*?)</div>', re.S)
SNAPSHOT = re.compile(r'<div id="message-(\d+)-body" hx-swap-oob="innerHTML">(.*?)</div>', re.S)


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


@dataclass
class ReplyView:
    """One reply as a page holds it: its text while streaming, then the final article."""

    text: str = ""
    status: str = "pending"
    body_kind: str = "plain"
    final_body: str = ""
    # Every text the body had while streaming, to check that each is a prefix of the end.
    seen: list[str] = field(default_factory=list)
    snapshots: int = 0

    def show(self, text: str) -> None:
        self.text = text
        self.seen.append(text)


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
            reply = self.replies.setdefault(int(reply_id), ReplyView())
            reply.status = status
            body = BODY.search(inner)
            if status not in ACTIVE and body:
                reply.body_kind, reply.final_body = body.group(1), body.group(2)
                if body.group(1) == "plain":
                    reply.text = html.unescape(body.group(2))
        for reply_id, text in DELTA.findall(frame):
            if (reply := self.replies.get(int(reply_id))) and reply.status in ACTIVE:
                reply.show(reply.text + html.unescape(text))
        for reply_id, text in SNAPSHOT.findall(frame):
            if (reply := self.replies.get(int(reply_id))) and reply.status in ACTIVE:
                reply.snapshots += 1
                reply.show(html.unescape(text))
