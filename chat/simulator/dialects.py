"""How the demo model writes each dialect's stream, shaped after the vendors' docs."""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from typing import Any

# The labels of a prompt flattened by ``chat.providers.base.flatten_history``.
USER_LABEL = "\n\nUser: "
ANSWER_CUE = "\n\nAssistant:"


def _dumps(data: Any) -> str:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


def sse(data: str, event: str = "") -> str:
    lines = [f"event: {event}"] if event else []
    lines += [f"data: {line}" for line in data.split("\n")]
    return "\n".join(lines) + "\n\n"


def estimate(text: str) -> int:
    return math.ceil(len(text) / 4)


def latest_message(prompt: str) -> str:
    """The last user message of a single-prompt request, flattened history or not.

    Directives are read from it alone, so an earlier turn's ``[sim ...]`` does not steer
    a later reply, as it would not with a list of messages.
    """
    if not prompt.endswith(ANSWER_CUE):
        return prompt
    _, label, latest = ("\n\n" + prompt.removesuffix(ANSWER_CUE)).rpartition(USER_LABEL)
    return latest if label else prompt


@dataclass
class Request:
    model: str
    prompt: str  # the latest user message, where directives are read
    prompt_chars: int
    image_url: str = ""
    include_usage: bool = False


class ChatCompletions:
    name = "openai-chat"
    # Where a request sets its reply's length limit in tokens.
    max_tokens_field = "max_tokens"
    id = "chatcmpl-demo"
    key_header = "authorization"

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
        chunk = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": "demo",
        }
        return sse(_dumps({**chunk, "choices": [choice], **extra}))

    def head(self, request: Request) -> list[str]:
        return [self._chunk({"role": "assistant", "content": ""})]

    def token(self, text: str, so_far: str) -> str:
        return self._chunk({"content": text})

    def thinking(self, text: str) -> str:
        # DeepSeek's shape: the thinking in reasoning_content, content null meanwhile.
        return self._chunk({"reasoning_content": text, "content": None})

    def _usage(self, request: Request, text: str, thought: str = "") -> dict[str, Any]:
        prompt, completion = estimate("x" * request.prompt_chars), estimate(text) + estimate(thought)
        usage: dict[str, Any] = {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }
        if thought:
            usage["completion_tokens_details"] = {"reasoning_tokens": estimate(thought)}
        return usage

    def tail(self, request: Request, finish: str, text: str, thought: str = "") -> list[str]:
        events = [self._chunk({}, finish)]
        if request.include_usage:
            chunk = {"id": self.id, "object": "chat.completion.chunk", "choices": []}
            events.append(sse(_dumps({**chunk, "usage": self._usage(request, text, thought)})))
        return [*events, sse("[DONE]")]

    def error_event(self, message: str) -> str:
        return sse(_dumps({"error": {"message": message, "type": "server_error"}}))

    def error_body(self, status: int, message: str) -> dict:
        kind = "invalid_request_error" if status < 500 else "server_error"
        return {"error": {"message": message, "type": kind}}


class Responses:
    name = "openai-responses"
    max_tokens_field = "max_output_tokens"
    key_header = "authorization"
    item = {"id": "msg_demo", "type": "message", "role": "assistant"}
    part = {"item_id": "msg_demo", "output_index": 0, "content_index": 0}

    def parse(self, body: dict, path_model: str = "") -> Request:
        items = body.get("input", "")
        image = ""
        if isinstance(items, str):
            prompt, chars = items, len(items)
        else:
            users = [i for i in items if i.get("role") == "user"]
            content = users[-1].get("content", "") if users else ""
            if isinstance(content, list):
                image = next((p["image_url"] for p in content if p.get("type") == "input_image"), "")
                content = " ".join(p.get("text", "") for p in content if p.get("type") == "input_text")
            prompt, chars = str(content), len(json.dumps(items))
        chars += len(body.get("instructions") or "")
        return Request(body.get("model", ""), prompt, chars, image)

    def _event(self, kind: str, **fields: Any) -> str:
        return sse(_dumps({"type": kind, **fields}), kind)

    def head(self, request: Request) -> list[str]:
        response = {"id": "resp_demo", "object": "response", "status": "in_progress", "model": request.model}
        return [
            self._event("response.created", response=response),
            self._event("response.in_progress", response=response),
            self._event("response.output_item.added", output_index=0, item={**self.item, "content": []}),
            self._event("response.content_part.added", **self.part, part={"type": "output_text", "text": ""}),
        ]

    def token(self, text: str, so_far: str) -> str:
        return self._event("response.output_text.delta", **self.part, delta=text)

    def thinking(self, text: str) -> str:
        summary = {"item_id": "rs_demo", "output_index": 0, "summary_index": 0}
        return self._event("response.reasoning_summary_text.delta", **summary, delta=text)

    def tail(self, request: Request, finish: str, text: str, thought: str = "") -> list[str]:
        usage: dict[str, Any] = {
            "input_tokens": estimate("x" * request.prompt_chars),
            "output_tokens": estimate(text) + estimate(thought),
        }
        if thought:
            usage["output_tokens_details"] = {"reasoning_tokens": estimate(thought)}
        done = self._event("response.output_text.done", **self.part, text=text)
        if finish == "length":
            details = {"reason": "max_output_tokens"}
            response = {"status": "incomplete", "incomplete_details": details, "usage": usage}
            return [done, self._event("response.incomplete", response=response)]
        response = {"id": "resp_demo", "status": "completed", "usage": usage}
        return [done, self._event("response.completed", response=response)]

    def error_event(self, message: str) -> str:
        error = {"code": "server_error", "message": message}
        return self._event("response.failed", response={"status": "failed", "error": error})

    def error_body(self, status: int, message: str) -> dict:
        kind = "server_error" if status >= 500 else "invalid_request_error"
        return {"error": {"message": message, "type": kind}}


class MuApi(ChatCompletions):
    name = "muapi"
    max_tokens_field = ""
    key_header = "x-api-key"

    def parse(self, body: dict, path_model: str = "") -> Request:
        prompt = str(body.get("prompt", ""))
        chars = len(prompt) + len(str(body.get("system_prompt", "")))
        image = str(body.get("image_url", ""))
        return Request(path_model, latest_message(prompt), chars, image, include_usage=True)

    def head(self, request: Request) -> list[str]:
        return []

    def tail(self, request: Request, finish: str, text: str, thought: str = "") -> list[str]:
        return [self._chunk({}, finish, usage=self._usage(request, text, thought)), sse("[DONE]")]

    def error_event(self, message: str) -> str:
        return sse(_dumps({"error": message}))

    def error_body(self, status: int, message: str) -> dict:
        return {"error": message}


class TextDelta:
    name = "text-delta"
    max_tokens_field = "maxTokens"
    id = "gen_demo"
    key_header = "authorization"

    def parse(self, body: dict, path_model: str = "") -> Request:
        prompt = str(body.get("prompt", ""))
        return Request("", latest_message(prompt), len(prompt))

    def head(self, request: Request) -> list[str]:
        return []

    def token(self, text: str, so_far: str) -> str:
        return sse(_dumps({"id": self.id, "text": so_far + text, "delta": text}))

    def tail(self, request: Request, finish: str, text: str, thought: str = "") -> list[str]:
        final = {"id": self.id, "text": text, "delta": "", "finishReason": finish}
        return [sse(_dumps(final)), sse("[DONE]")]

    def error_event(self, message: str) -> str:
        return sse(_dumps({"error": {"type": "server_error", "message": message}}))

    def error_body(self, status: int, message: str) -> dict:
        kind = "server_error" if status >= 500 else "invalid_request"
        return {"error": {"type": kind, "message": message}}


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
