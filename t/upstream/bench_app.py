#!/usr/bin/env python3
"""The benchmark's page and its small dynamic upstream (used by ci/bench).
Standard library only.

    bench_app.py article        print the 20 KB HTML article (exactly 20480
                                bytes, the same every time)
    bench_app.py serve PORT     serve it on 127.0.0.1:PORT, rendered anew for
                                every GET or HEAD of any path (HTTP/1.1,
                                keep-alive, one thread per connection)
    bench_app.py serve-limited PORT [WORKERS [MS]]
                                an application of fixed capacity (case 7 of
                                ci/bench), like Django under gunicorn with
                                WORKERS sync workers: at most WORKERS (2)
                                renders at once, each taking MS (20) ms, so
                                about WORKERS * 1000 / MS pages/s; the others
                                queue. Every GET or HEAD of a path renders a
                                page of about 5 KB that says which render it
                                is; GET /__renders answers the renders since
                                the start or the last POST /__reset as JSON:
                                {"total": N, "paths": {PATH: N, ...},
                                "renders": [[UNIX_TIME, PATH], ...],
                                "active": N} (a render is counted when its
                                request arrives; "active": those not yet
                                answered, queued or rendering)

The article is built from a fixed pseudo-random word sequence, escaped as a
template engine would, and contains no `"`, `'`, `$` or `\\`, so the same
bytes can also be inlined into an nginx configuration string.
"""
import html
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SIZE = 20480

WORDS = (
    "static pages nginx module request upstream worker purge tree file "
    "generated server client response header body cache proxy application "
    "article site content rendered stored served disk memory latency "
    "throughput benchmark django gunicorn template database query visitor "
    "anonymous session cookie directory path epoch journal lock thread"
).split()


def _words(seed):
    """A deterministic stream of words (a linear congruential generator)."""
    state = seed
    while True:
        state = (state * 1103515245 + 12345) % 2**31
        yield WORDS[(state >> 8) % len(WORDS)]


def _paragraph(words, sentences):
    out = []
    for n in range(sentences):
        length = 8 + n % 9
        sentence = " ".join(next(words) for _ in range(length))
        out.append(sentence[0].upper() + sentence[1:] + ".")
    return "<p>" + html.escape(" ".join(out), quote=False) + "</p>\n"


def article():
    """The page: always the same SIZE bytes (ASCII)."""
    head = (
        "<!doctype html>\n<html lang=en>\n<head>\n<meta charset=utf-8>\n"
        "<meta name=viewport content=width=device-width>\n"
        "<title>Turning a dynamic site into static pages</title>\n"
        "<link rel=stylesheet href=/static/site.css>\n</head>\n<body>\n"
        "<header><nav><a href=/>Home</a> <a href=/articles/>Articles</a> "
        "<a href=/about>About</a></nav></header>\n<main>\n<article>\n"
        "<h1>Turning a dynamic site into static pages</h1>\n"
        "<p class=meta>Published 2024-05-01 by the benchmark</p>\n"
    )
    tail = (
        "</article>\n</main>\n<footer><p>Generated for the static_gen "
        "benchmark.</p></footer>\n</body>\n</html>\n"
    )
    words = _words(20480)
    body = head
    section = 0
    while True:
        if section % 4 == 0:
            block = f"<h2>Section {section // 4 + 1}</h2>\n" + _paragraph(words, 5)
        else:
            block = _paragraph(words, 4 + section % 3)
        if len(body) + len(block) + len(tail) + 16 > SIZE:
            break
        body += block
        section += 1
    pad = SIZE - len(body) - len(tail) - len("<!--  -->\n")
    page = body + "<!-- " + "." * pad + " -->\n" + tail
    assert len(page.encode()) == SIZE
    assert not set("\"'$\\") & set(page)
    return page


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def do_GET(self):
        data = article().encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_HEAD = do_GET


def limited_page(path, render, total):
    """A page of about 5 KB for PATH that says which render it is."""
    text = html.escape(path, quote=False)
    return (
        "<!doctype html>\n<html lang=en>\n<head>\n<meta charset=utf-8>\n"
        f"<title>Page {text}</title>\n</head>\n<body>\n<main>\n<h1>Page {text}</h1>\n"
        f"<p class=render>Render {render} of this page, {total} in all.</p>\n"
        f"{_FILLER}</main>\n</body>\n</html>\n"
    )


_FILLER_WORDS = _words(5)
_FILLER = "".join(_paragraph(_FILLER_WORDS, 6) for _ in range(10))


class Limited(BaseHTTPRequestHandler):
    """The handler of `serve-limited`: a render holds one of the server's
    workers (a semaphore) for its time."""

    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def _reply(self, data, content_type="text/html"):
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def do_GET(self):
        server = self.server
        path = self.path
        if path == "/__renders":
            with server.counts:
                data = json.dumps(
                    {"total": len(server.renders), "paths": server.paths,
                     "renders": server.renders, "active": server.active}
                )
            self._reply(data.encode(), "application/json")
            return
        with server.counts:  # counted when it arrives
            server.renders.append([time.time(), path])
            server.paths[path] = render = server.paths.get(path, 0) + 1
            total = len(server.renders)
            server.active += 1
        try:
            with server.workers:  # one worker renders it, the others queue
                time.sleep(server.seconds)
                data = limited_page(path, render, total).encode()
            self._reply(data)
        finally:
            with server.counts:
                server.active -= 1

    do_HEAD = do_GET

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        if self.path != "/__reset":
            self.send_error(404)
            return
        with self.server.counts:
            self.server.renders = []
            self.server.paths = {}
        self._reply(b"{}", "application/json")


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # wrk opens all its connections at once

    def handle_error(self, request, client_address):
        # a client (nginx) that went away, while the page was rendered
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def main():
    args = sys.argv[1:]
    if args == ["article"]:
        sys.stdout.write(article())
        return
    if len(args) == 2 and args[0] == "serve":
        server = Server(("127.0.0.1", int(args[1])), Handler)
    elif 2 <= len(args) <= 4 and args[0] == "serve-limited":
        server = Server(("127.0.0.1", int(args[1])), Limited)
        server.workers = threading.Semaphore(int(args[2]) if len(args) > 2 else 2)
        server.seconds = (int(args[3]) if len(args) > 3 else 20) / 1000
        server.counts = threading.Lock()
        server.renders = []
        server.paths = {}
        server.active = 0
    else:
        sys.exit(__doc__)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
