"""A local fake of an OpenAI-compatible chat-completions endpoint, for the llm judge's tests.

It serves ``POST /v1/chat/completions`` on 127.0.0.1 (never the network), records every request
(headers, body and time), can fail the first requests with HTTP 500 (``fail_first``) or follow a
``plan`` for its first requests (an HTTP status, with ``Retry-After`` for ``(429, seconds)``, or
``"garbage"``: a 200 whose content is not a judgement), can answer every request with one
status (``always``: 401, 404, ...) or only a model it does not serve (``models``: the served
names; any other gets HTTP 404, as a real server answers), and otherwise answers with a judgement in the official
structured format: ``correct`` is "yes" when the prompt's ``[correct_answer]`` is the response's
answer line; or, with ``reply`` (a function of the request body), with what it returns: a fake
answering server.
"""

from __future__ import annotations

import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class FakeJudgeServer:
    def __init__(
        self,
        fail_first: int = 0,
        plan: list[Any] | None = None,
        always: int | None = None,
        reply: Any = None,
        models: set[str] | None = None,
    ) -> None:
        self.requests: list[dict[str, Any]] = []
        self.models = models
        self.reply = reply
        self.fail_first = fail_first
        self.plan = list(plan or [])
        self.always = always
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server._lock:
                    server.requests.append(
                        {
                            "path": self.path,
                            "headers": {k.lower(): v for k, v in self.headers.items()},
                            "body": body,
                            "time": time.monotonic(),
                        }
                    )
                    failing = len(server.requests) <= server.fail_first
                    step = server.plan.pop(0) if server.plan else server.always
                if server.models is not None and body.get("model") not in server.models:
                    step = 404
                if failing:
                    step = 500
                if step == "garbage":
                    self._send(200, server.completion(body, content="I think it is correct."))
                elif step is not None:
                    status, wait = step if isinstance(step, tuple) else (step, None)
                    headers = {"Retry-After": str(wait)} if wait is not None else {}
                    error = {"message": f"fake error {status}", "type": "fake", "code": status}
                    self._send(status, {"error": error}, headers)
                elif server.reply is not None:
                    self._send(200, server.completion(body, content=server.reply(body)))
                else:
                    self._send(200, server.completion(body))

            def _send(
                self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None
            ) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def __enter__(self) -> FakeJudgeServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._server.shutdown()
        self._server.server_close()

    @staticmethod
    def judgement(prompt: str) -> dict[str, Any]:
        response = prompt.split("[response]: ", 1)[1].split("\n\nYour judgement must be", 1)[0]
        correct = prompt.split("[correct_answer]: ", 1)[1].split("\n\nreasoning:", 1)[0]
        answer = re.findall(r"Answer:\s*(.*)", response)
        confidence = re.findall(r"Confidence:\s*(\d+)", response)
        return {
            "extracted_final_answer": answer[-1].strip() if answer else "None",
            "reasoning": f"compared with {correct!r}",
            "correct": "yes" if answer and answer[-1].strip() == correct.strip() else "no",
            "confidence": int(confidence[-1]) if confidence else 100,
        }

    def completion(self, body: dict[str, Any], content: str | None = None) -> dict[str, Any]:
        prompt = body["messages"][0]["content"]
        if content is None:
            content = json.dumps(self.judgement(prompt))
        return {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body["model"],
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20},
        }
