#!/usr/bin/env python3
"""A tiny dynamic site for the demo and the tests: every page shows when it
was rendered, so a page served from the generated tree is easy to tell from
a fresh one. Standard library only.

    demo_app.py PORT [LOGFILE]

Pages: / (home), /articles/<slug>/ (article with a comment form),
/about, /login (sets the session cookie), /feed.xml. A POST to an article
appends a comment. Each request is logged as "METHOD PATH" to LOGFILE.
"""
import html
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

COMMENTS = {}


def page(title, body):
    stamp = time.strftime("%H:%M:%S") + f".{int(time.time() * 1000) % 1000:03d}"
    return (
        "<!doctype html>\n<html><head><meta charset=\"utf-8\">"
        f"<title>{html.escape(title)}</title></head>\n<body>\n"
        f"<h1>{html.escape(title)}</h1>\n{body}\n"
        f"<p><small>rendered at {stamp}</small></p>\n</body></html>\n"
    )


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    log_file = None

    def log_message(self, fmt, *args):
        pass

    def record(self):
        if self.log_file:
            with open(self.log_file, "a") as f:
                f.write(f"{self.command} {self.path}\n")

    def send(self, status, body, content_type="text/html; charset=utf-8", headers=()):
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def user(self):
        cookies = self.headers.get("Cookie", "")
        for part in cookies.split(";"):
            name, _, value = part.strip().partition("=")
            if name == "sessionid" and value:
                return value
        return None

    def do_HEAD(self):
        self.do_GET()

    def do_GET(self):
        self.record()
        path = self.path
        user = self.user()
        greeting = f"<p>Logged in as {html.escape(user)}</p>" if user else ""
        if path == "/":
            links = "".join(
                f'<li><a href="/articles/post-{i}/">Post {i}</a></li>' for i in range(1, 6)
            )
            self.send(200, page("Home", greeting + f"<ul>{links}</ul>"))
        elif path.startswith("/articles/") and path.endswith("/") and path.count("/") == 3:
            slug = path.split("/")[2]
            comments = COMMENTS.get(slug, [])
            listing = "".join(f"<li>{html.escape(c)}</li>" for c in comments)
            form = (
                f'<form method="post" action="{html.escape(path)}">'
                '<input name="comment"><button>Comment</button></form>'
            )
            self.send(200, page(f"Article {slug}", greeting + f"<ol>{listing}</ol>{form}"))
        elif path == "/about":
            self.send(200, page("About", greeting + "<p>A demo site.</p>"))
        elif path == "/login":
            self.send(
                200,
                page("Logged in", "<p>Welcome, demo.</p>"),
                headers=[("Set-Cookie", "sessionid=demo; Path=/; HttpOnly")],
            )
        elif path == "/feed.xml":
            self.send(200, "<rss version=\"2.0\"></rss>\n", "application/rss+xml")
        else:
            self.send(404, page("Not found", ""))

    def do_POST(self):
        self.record()
        length = int(self.headers.get("Content-Length") or 0)
        form = self.rfile.read(length).decode(errors="replace")
        slug = self.path.strip("/").split("/")[-1]
        comment = form.partition("comment=")[2].replace("+", " ")
        COMMENTS.setdefault(slug, []).append(comment)
        self.send(200, page("Comment posted", f"<p>Thanks for: {html.escape(comment)}</p>"))


def main():
    port = int(sys.argv[1])
    Handler.log_file = sys.argv[2] if len(sys.argv) > 2 else None
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
