"""A small OpenAI-compatible chat endpoint on 127.0.0.1 for the language-model tests.

It answers every ``POST .../chat/completions`` with ``answer`` (a string, or a list of
strings given out in turn, the last one repeated) and records each request's path and body
in ``requests``. ``status`` other than 200 makes it answer with that HTTP error.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class ChatServer:
    """A small OpenAI-compatible chat endpoint: answers with what the test sets, records what it was asked."""

    def __init__(self):
        self.answer: str | list[str] = ""
        self.status = 200
        self.requests: list[dict] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append({"path": self.path, **body})
                answer = server.answer
                if isinstance(answer, list):
                    answer = answer[min(len(server.requests), len(answer)) - 1]
                data = json.dumps({"id": "x", "object": "chat.completion", "model": body.get("model"),
                                   "choices": [{"index": 0, "finish_reason": "stop",
                                                "message": {"role": "assistant", "content": answer}}]}).encode()
                if server.status != 200:
                    data = b'{"error": "the model is not loaded"}'
                self.send_response(server.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
