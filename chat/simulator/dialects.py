"""How the demo model writes each dialect's stream, shaped after the vendors' docs."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any


def _dumps(data: Any) -> str:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


def sse(data: str, event: str = "") -> str:
    lines = [f"event: {event}"] if event else []
    lines += [f"data: {line}" for line in data.split("\n")]
    return "\n".join(lines) + "\n\n"


def estimate(text: str) -> int:
    return math.ceil(len(text) / 4)


@dataclass
class Request:
    model: str
    prompt: str  # the latest user message, where directives are read
    prompt_chars: int
    image_url: str = ""
    include_usage: bool = False


class ChatCompletions:
    name = "openai-chat"
    id = "chatcmpl-demo"

    def parse(self, body: dict, path_model: str = "") -> Request:
        messages = body.get("messages") or []
        users = [m for m in messages if m.get("role") == "user"]
        content = users[-1].get("content", "") if users else ""
        image = ""
        if isinstance(content, list):
            image = next((p["image_url"]["url"] for p in content if p.get("type") == "image_url"), "")
            content = " ".join(p.get("text", "") for p in content if p.get("type") == "text")
        chars = sum(len(json.dumps(m.get("content", ""))) for m in messages)
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        return Request(body.get("model", ""), str(content), chars, image, include_usage)

    def _chunk(self, delta: dict, finish: str | None = None, **extra: Any) -> str:
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        return sse(_dumps({"id": self.id, "object": "chat.completion.chunk", "choices": [choice], **extra}))

    def head(self, request: Request) -> list[str]:
        return [self._chunk({"role": "assistant", "content": ""})]

    def token(self, text: str, so_far: str) -> str:
        return self._chunk({"content": text})

    def tail(self, request: Request, finish: str, text: str) -> list[str]:
        events = [self._chunk({}, finish)]
        if request.include_usage:
            usage = {
                "prompt_tokens": estimate("x" * request.prompt_chars),
                "completion_tokens": estimate(text),
            }
            usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
            events.append(
                sse(_dumps({"id": self.id, "object": "chat.completion.chunk", "choices": [], "usage": usage}))
            )
        return [*events, sse("[DONE]")]

    def error_event(self, message: str) -> str:
        return sse(_dumps({"error": {"message": message, "type": "server_error"}}))

    def error_body(self, status: int, message: str) -> dict:
        return {
            "error": {"message": message, "type": "invalid_request_error" if status < 500 else "server_error"}
        }


class Responses:
    name = "openai-responses"

    def parse(self, body: dict, path_model: str = "") -> Request:
        items = body.get("input", "")
        if isinstance(items, str):
            prompt, chars = items, len(items)
        else:
            users = [i for i in items if i.get("role") == "user"]
            content = users[-1].get("content", "") if users else ""
            if isinstance(content, list):
                content = " ".join(p.get("text", "") for p in content if p.get("type") == "input_text")
            prompt, chars = str(content), len(json.dumps(items))
        return Request(body.get("model", ""), prompt, chars + len(body.get("instructions") or ""))

    def head(self, request: Request) -> list[str]:
        response = {"id": "resp_demo", "status": "in_progress", "model": request.model}
        return [sse(_dumps({"type": "response.created", "response": response}), "response.created")]

    def token(self, text: str, so_far: str) -> str:
        return sse(
            _dumps({"type": "response.output_text.delta", "delta": text}), "response.output_text.delta"
        )

    def tail(self, request: Request, finish: str, text: str) -> list[str]:
        usage = {"input_tokens": estimate("x" * request.prompt_chars), "output_tokens": estimate(text)}
        if finish == "length":
            response = {
                "status": "incomplete",
                "incomplete_details": {"reason": "max_output_tokens"},
                "usage": usage,
            }
            return [sse(_dumps({"type": "response.incomplete", "response": response}), "response.incomplete")]
        response = {"status": "completed", "usage": usage}
        return [sse(_dumps({"type": "response.completed", "response": response}), "response.completed")]

    def error_event(self, message: str) -> str:
        return sse(_dumps({"type": "error", "code": "server_error", "message": message}), "error")

    def error_body(self, status: int, message: str) -> dict:
        return {
            "error": {
                "message": message,
                "type": "server_error" if status >= 500 else "invalid_request_error",
            }
        }


class MuApi(ChatCompletions):
    name = "muapi"

    def parse(self, body: dict, path_model: str = "") -> Request:
        prompt = str(body.get("prompt", ""))
        chars = len(prompt) + len(str(body.get("system_prompt", "")))
        return Request(path_model, prompt, chars, str(body.get("image_url", "")), include_usage=True)

    def head(self, request: Request) -> list[str]:
        return []

    def tail(self, request: Request, finish: str, text: str) -> list[str]:
        usage = {"prompt_tokens": estimate("x" * request.prompt_chars), "completion_tokens": estimate(text)}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        return [self._chunk({}, finish, usage=usage), sse("[DONE]")]

    def error_event(self, message: str) -> str:
        return sse(_dumps({"error": message}))

    def error_body(self, status: int, message: str) -> dict:
        return {"error": message}


class TextDelta:
    name = "text-delta"
    id = "gen_demo"

    def parse(self, body: dict, path_model: str = "") -> Request:
        prompt = str(body.get("prompt", ""))
        return Request("", prompt, len(prompt))

    def head(self, request: Request) -> list[str]:
        return []

    def token(self, text: str, so_far: str) -> str:
        return sse(_dumps({"id": self.id, "text": so_far + text, "delta": text}))

    def tail(self, request: Request, finish: str, text: str) -> list[str]:
        return [
            sse(_dumps({"id": self.id, "text": text, "delta": "", "finishReason": finish})),
            sse("[DONE]"),
        ]

    def error_event(self, message: str) -> str:
        return sse(_dumps({"error": {"type": "server_error", "message": message}}))

    def error_body(self, status: int, message: str) -> dict:
        return {"error": {"type": "server_error" if status >= 500 else "invalid_request", "message": message}}


ROUTES = {
    "/v1/chat/completions": ChatCompletions(),
    "/v1/responses": Responses(),
    "/v1/generate/stream": TextDelta(),
}
MUAPI = MuApi()


def route(path: str) -> tuple[Any, str] | None:
    """The dialect for a request path, and the model named in the path (MuAPI)."""
    if path in ROUTES:
        return ROUTES[path], ""
    parts = path.strip("/").split("/")
    if len(parts) == 3 and parts[0] == "muapi" and parts[2] == "stream":
        return MUAPI, parts[1]
    return None
