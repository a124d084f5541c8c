#!/usr/bin/env python3
"""Case 10 of ci/bench, a day of real visitors: the site's application and
the visitors' requests. Standard library only.

    visitors_app.py serve PORT      the blog's application on 127.0.0.1:PORT
    visitors_app.py urls N SEED     N requests of the visitor mix, one a line
                                    (`PATH` or `PATH<TAB>COOKIE`), the input
                                    of `loadgen --urls`

The application renders every page in about RENDER_MS (5) ms, one thread per
connection (HTTP/1.1, keep-alive), and sets no cookie:

    /                               the home page, 200
    /articles/a<N>/                 article N (0 <= N < ARTICLES), 200
    /articles/2019/a<N>/            an old URL: 301 to /articles/a<N>/
    /categories/<c>/?page=K         a listing (any arguments), 200
    anything else                   404, a small page
    GET /__count                    {"total": N}: the requests since the
                                    start or the last POST /__reset (these
                                    two are not counted)

The mix, per 100 requests: 50 article views (Zipf popularity, s = 1, over
ARTICLES articles), 15 article views from campaign links (utm_*, fbclid or
gclid; the last two unique per click), 8 listing pages (`?page=K`), 5 home
page, 7 logged-in views (a `sessionid` cookie), 7 bot probes of missing
paths (`/wp-login.php`, `/.env`, `/xmlrpc.php`, a missing article), 3 old
URLs (301), 5 article views with a harmless argument (`?ref=hn`).
"""
import bisect
import itertools
import json
import random
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from bench_app import article

ARTICLES = 2000
CATEGORIES = 10
LISTING_PAGES = 20
RENDER_MS = 5

PAGE = article().encode()
NOT_FOUND = b"<!doctype html>\n<title>Not found</title>\n<h1>Not found</h1>\n"

# (share per 100 requests, kind)
MIX = (
    (50, "article"),
    (15, "campaign"),
    (8, "listing"),
    (5, "home"),
    (7, "logged-in"),
    (7, "probe"),
    (3, "old"),
    (5, "ref"),
)


class Counter:
    def __init__(self):
        self.lock = threading.Lock()
        self.total = 0

    def add(self):
        with self.lock:
            self.total += 1

    def reset(self):
        with self.lock:
            self.total = 0


COUNTER = Counter()


def route(path):
    """The status, extra headers and body of PATH (query ignored)."""
    path = path.split("?", 1)[0]
    parts = path.strip("/").split("/")
    if path == "/":
        return 200, [], PAGE
    if path.endswith("/") and parts[0] == "articles":
        if len(parts) == 2 and _article(parts[1]):
            return 200, [], PAGE
        if len(parts) == 3 and parts[1] == "2019" and _article(parts[2]):
            return 301, [("Location", f"/articles/{parts[2]}/")], b""
    if path.endswith("/") and len(parts) == 2 and parts[0] == "categories":
        return 200, [], PAGE
    return 404, [], NOT_FOUND


def _article(slug):
    return slug[:1] == "a" and slug[1:].isdigit() and int(slug[1:]) < ARTICLES


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # the headers and the body are two writes: without TCP_NODELAY, the
    # second waits for the client's delayed ACK (40 ms) on some clients
    disable_nagle_algorithm = True

    def log_message(self, fmt, *args):
        pass

    def do_GET(self):
        if self.path == "/__count":
            self._send(200, [], json.dumps({"total": COUNTER.total}).encode())
            return
        COUNTER.add()
        time.sleep(RENDER_MS / 1000)
        status, headers, body = route(self.path)
        self._send(status, headers, body)

    def do_POST(self):
        if self.path != "/__reset":
            self._send(404, [], NOT_FOUND)
            return
        COUNTER.reset()
        self._send(200, [], b"reset\n")

    def _send(self, status, headers, body):
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_HEAD = do_GET


def serve(port):
    ThreadingHTTPServer.daemon_threads = True
    ThreadingHTTPServer.request_queue_size = 128
    ThreadingHTTPServer(("127.0.0.1", int(port)), Handler).serve_forever()


def visitor_urls(n, seed):
    """N lines of the mix, drawn with SEED."""
    rng = random.Random(int(seed))
    kinds = [kind for share, kind in MIX for _ in range(share)]
    weights = list(itertools.accumulate(1 / k for k in range(1, ARTICLES + 1)))
    clicks = itertools.count()

    def popular():
        i = bisect.bisect_left(weights, rng.random() * weights[-1])
        return f"a{min(i, ARTICLES - 1)}"

    def line(kind):
        if kind == "article":
            return f"/articles/{popular()}/"
        if kind == "campaign":
            click = next(clicks)
            return f"/articles/{popular()}/?" + rng.choice(
                (
                    "utm_source=newsletter&utm_medium=email&utm_campaign=weekly",
                    f"fbclid=IwAR{seed}x{click:x}",
                    f"utm_source=google&gclid=Cj0K{seed}x{click:x}",
                )
            )
        if kind == "listing":
            c = rng.randrange(CATEGORIES)
            return f"/categories/c{c}/?page={rng.randint(1, LISTING_PAGES)}"
        if kind == "home":
            return "/"
        if kind == "logged-in":
            return f"/articles/{popular()}/\tsessionid=s{rng.randrange(50)}"
        if kind == "probe":
            return rng.choice(
                (
                    "/wp-login.php",
                    "/.env",
                    "/xmlrpc.php",
                    f"/articles/missing-{rng.randrange(1000)}/",
                )
            )
        if kind == "old":
            return f"/articles/2019/{popular()}/"
        return f"/articles/{popular()}/?ref=hn"

    return [line(rng.choice(kinds)) for _ in range(int(n))]


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "serve":
        serve(sys.argv[2])
    elif len(sys.argv) == 4 and sys.argv[1] == "urls":
        sys.stdout.write("\n".join(visitor_urls(sys.argv[2], sys.argv[3])) + "\n")
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
