"""``lstmkit inspect --serve``: the explorer page on a local port, with the model live behind it.

Routes (127.0.0.1 only — the model runs on whatever text arrives, so it is not put on a network):
    GET  /                 the explorer page (the same file ``--out`` writes, with the live panel on)
    POST /api/states       body {"text": "..."} → the page's JSON for that text (explorer.build_payload);
                           400 {"error": "..."} for input the model cannot take (one line, as the CLI)

    >>> server = make_server(page_html, compute)     # doctest: +SKIP
    >>> server.serve_forever()                       # doctest: +SKIP
"""
from __future__ import annotations

import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

MAX_BODY = 1 << 20  # 1 MiB of JSON: far beyond a page anyone can read, small enough to refuse abuse
HOST = "127.0.0.1"


def make_server(page: str, compute: Callable[[dict[str, Any]], dict[str, Any]], port: int = 0,
                quiet: bool = True) -> ThreadingHTTPServer:
    """A server (not yet serving) on 127.0.0.1:port (0: any free port; see server.server_address).

    compute(request JSON) → payload JSON; a ValueError it raises becomes a 400 with its message.
    """
    body = page.encode("utf-8")

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, fmt: str, *args: Any) -> None:
            if not quiet:
                super().log_message(fmt, *args)

        def _send(self, code: int, content: bytes, ctype: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(content)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(content)

        def _json(self, code: int, obj: Any) -> None:
            self._send(code, json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8"),
                       "application/json; charset=utf-8")

        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            if self.path in ("/", "/index.html"):
                self._send(200, body, "text/html; charset=utf-8")
            else:
                self._json(404, {"error": f"no page at {self.path}; the explorer is at /"})

        def do_POST(self) -> None:  # noqa: N802
            if self.path != "/api/states":
                self._json(404, {"error": f"no endpoint at {self.path}; POST /api/states"})
                return
            try:
                n = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                n = -1
            if not 0 < n <= MAX_BODY:
                self._json(400, {"error": f"expected a JSON body of 1 to {MAX_BODY} bytes, got Content-Length "
                                          f"{self.headers.get('Content-Length')!r}"})
                return
            try:
                request = json.loads(self.rfile.read(n).decode("utf-8"))
                if not isinstance(request, dict):
                    raise ValueError(f"expected a JSON object like {{\"text\": \"...\"}}, got {type(request).__name__}")
                payload = compute(request)
            except (ValueError, UnicodeDecodeError) as e:  # json.JSONDecodeError is a ValueError
                self._json(400, {"error": str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__})
                return
            except Exception as e:  # the page shows it; the server keeps serving
                self._json(500, {"error": f"internal error: {type(e).__name__}: {e}"})
                return
            self._json(200, payload)

    return ThreadingHTTPServer((HOST, port), Handler)
