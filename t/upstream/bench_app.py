#!/usr/bin/env python3
"""The benchmark's page and its small dynamic upstream (used by ci/bench).
Standard library only.

    bench_app.py article        print the 20 KB HTML article (exactly 20480
                                bytes, the same every time)
    bench_app.py serve PORT     serve it on 127.0.0.1:PORT, rendered anew for
                                every GET or HEAD of any path (HTTP/1.1,
                                keep-alive, one thread per connection)

The article is built from a fixed pseudo-random word sequence, escaped as a
template engine would, and contains no `"`, `'`, `$` or `\\`, so the same
bytes can also be inlined into an nginx configuration string.
"""
import html
import sys
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


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # wrk opens all its connections at once


def main():
    if sys.argv[1:] == ["article"]:
        sys.stdout.write(article())
    elif len(sys.argv) == 3 and sys.argv[1] == "serve":
        server = Server(("127.0.0.1", int(sys.argv[2])), Handler)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
