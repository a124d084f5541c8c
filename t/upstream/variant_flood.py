#!/usr/bin/env python3
"""Case 9 of ci/bench: a flood of new pages with browsers reading them.

Writers store new pages continuously through the module (a MISS each, at
RATE pages per second, from a fast upstream), while READERS browsers ask for
recent pages (spread over the last WINDOW stored) with
`Accept-Encoding: gzip, deflate, br` or `gzip` (in turn), on kept-alive
connections, READ_RATE requests per second in all (browsers read pages,
they do not hammer them; the load generator shares the machine with nginx).
Measured:

- the bytes served to those browsers: how many were compressed (a variant
  of the page), against those sent identity (the page had none yet);
- the delay from a page's store (its MISS answered) to its first variants
  (its file under ROOT starts with `static_gen 2`), polled every 5 ms;
- the pages still without variants when the flood ends, and 10 s later.

    variant_flood.py --port P --root DIR --run ID [--seconds 20] [--rate 300]
                     [--readers 4] [--read-rate 600] [--window 300] [--out FILE.md]

One JSON object on stdout (for the results), a markdown section to --out
(for the report), a summary on stderr. Standard library only.
"""

import argparse
import gzip
import http.client
import json
import os
import statistics
import sys
import threading
import time

ACCEPT = ("gzip, deflate, br", "gzip")


class Flood:
    def __init__(self, opts):
        self.opts = opts
        self.lock = threading.Lock()
        self.stored = []  # URIs, in the order stored
        self.pending = {}  # URI -> (page file, store time)
        self.delays = []  # seconds from store to first variants
        self.bytes = {"compressed": 0, "identity": 0}
        self.responses = {"compressed": 0, "identity": 0}
        self.errors = []
        self.checked = 0
        self.stop = threading.Event()

    def page_file(self, uri):
        return os.path.join(self.opts.root, uri.strip("/"), "index.html")

    def connect(self):
        return http.client.HTTPConnection("127.0.0.1", self.opts.port, timeout=30)

    def get(self, conn, uri, headers):
        conn.request("GET", uri, headers=headers)
        r = conn.getresponse()
        return r, r.read()

    def writer(self, first, step):
        """Stores pages first, first + step, ... at RATE / step per second."""
        conn = self.connect()
        start = time.monotonic()
        i = first
        while not self.stop.is_set():
            due = start + i / self.opts.rate
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            uri = f"/flood/{self.opts.run}/{i // 1000}/{i}/"
            try:
                r, _ = self.get(conn, uri, {})
            except (OSError, http.client.HTTPException) as e:
                self.errors.append(f"GET {uri}: {e}")
                conn = self.connect()
                continue
            at = time.monotonic()
            if r.status != 200:
                self.errors.append(f"GET {uri}: {r.status}")
            with self.lock:
                self.stored.append(uri)
                self.pending[uri] = (self.page_file(uri), at)
            i += step

    def reader(self, n):
        conn = self.connect()
        k = n
        start = time.monotonic()
        per_reader = self.opts.read_rate / self.opts.readers
        while not self.stop.is_set():
            wait = start + (k - n) / per_reader - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            with self.lock:
                recent = self.stored[-self.opts.window:]
            if not recent:
                time.sleep(0.01)
                continue
            k += 1
            uri = recent[(k * 7919) % len(recent)]
            accept = ACCEPT[k % len(ACCEPT)]
            try:
                r, body = self.get(conn, uri, {"Accept-Encoding": accept})
            except (OSError, http.client.HTTPException) as e:
                self.errors.append(f"GET {uri}: {e}")
                conn = self.connect()
                continue
            if r.status != 200:
                self.errors.append(f"GET {uri} ({accept}): {r.status}")
                continue
            coding = r.getheader("Content-Encoding")
            kind = "identity" if coding is None else "compressed"
            if coding not in (None, "gzip", "br") or (coding == "br" and "br" not in accept):
                self.errors.append(f"GET {uri} ({accept}): Content-Encoding {coding}")
            if coding == "gzip" and k % 50 == 0:
                # a sample decoded: the variant is the page
                if len(gzip.decompress(body)) != self.opts.page_size:
                    self.errors.append(f"GET {uri}: gzip variant does not decode to the page")
                self.checked += 1
            with self.lock:
                self.bytes[kind] += len(body)
                self.responses[kind] += 1

    def watcher(self):
        """Notes when each stored page's file first holds variants."""
        while not (self.stop.is_set() and not self.pending):
            with self.lock:
                pending = list(self.pending.items())
            for uri, (path, at) in pending:
                try:
                    with open(path, "rb") as f:
                        done = f.read(13) == b"static_gen 2\n"
                except OSError:
                    done = False
                if done:
                    now = time.monotonic()
                    with self.lock:
                        del self.pending[uri]
                        self.delays.append(now - at)
            if self.stop.is_set() and time.monotonic() > self.drain_deadline:
                return
            time.sleep(0.005)

    def run(self):
        opts = self.opts
        writers = [threading.Thread(target=self.writer, args=(i, 2)) for i in range(2)]
        readers = [threading.Thread(target=self.reader, args=(i,)) for i in range(opts.readers)]
        self.drain_deadline = float("inf")
        watcher = threading.Thread(target=self.watcher)
        for t in writers + readers + [watcher]:
            t.daemon = True
            t.start()
        started = time.monotonic()
        time.sleep(opts.seconds)
        self.stop.set()
        for t in writers + readers:
            t.join()
        elapsed = time.monotonic() - started
        with self.lock:
            left_at_end = len(self.pending)
        self.drain_deadline = time.monotonic() + 10
        watcher.join()
        return elapsed, left_at_end, len(self.pending)


def percentile(xs, p):
    if not xs:
        return None
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p / 100))]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--root", required=True)
    parser.add_argument("--run", required=True)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--rate", type=float, default=300)
    parser.add_argument("--readers", type=int, default=4)
    parser.add_argument("--read-rate", type=float, default=600)
    parser.add_argument("--window", type=int, default=300)
    parser.add_argument("--page-size", type=int, default=20480)
    parser.add_argument("--threads", default="auto")
    parser.add_argument("--out")
    opts = parser.parse_args()
    flood = Flood(opts)
    elapsed, left_at_end, left_later = flood.run()
    total = flood.bytes["compressed"] + flood.bytes["identity"]
    answers = flood.responses["compressed"] + flood.responses["identity"]
    ms = [d * 1000 for d in flood.delays]
    result = {
        "kind": "flood",
        "seconds": round(elapsed, 1),
        "stored": len(flood.stored),
        "rate": round(len(flood.stored) / elapsed, 1),
        "readers": opts.readers,
        "window": opts.window,
        "reads": answers,
        "reads_per_s": round(answers / elapsed, 1),
        "compressed_bytes": flood.bytes["compressed"],
        "identity_bytes": flood.bytes["identity"],
        "bytes_share": round(100 * flood.bytes["compressed"] / total, 2) if total else None,
        "responses_share": round(100 * flood.responses["compressed"] / answers, 2) if answers else None,
        "delay_ms_p50": percentile(ms, 50),
        "delay_ms_p90": percentile(ms, 90),
        "delay_ms_p99": percentile(ms, 99),
        "delay_ms_max": max(ms) if ms else None,
        "without_variants_at_end": left_at_end,
        "without_variants_10s_later": left_later,
        "errors": len(flood.errors),
        "threads": opts.threads,
    }
    for key in ("delay_ms_p50", "delay_ms_p90", "delay_ms_p99", "delay_ms_max"):
        if result[key] is not None:
            result[key] = round(result[key], 1)
    print(json.dumps(result))
    print(
        f"flood: {result['stored']} pages stored in {result['seconds']} s ({result['rate']}/s), "
        f"{answers} reads ({result['reads_per_s']}/s): {result['bytes_share']} % of the bytes "
        f"compressed ({result['responses_share']} % of the responses); first variants "
        f"p50 {result['delay_ms_p50']} ms, p99 {result['delay_ms_p99']} ms, max "
        f"{result['delay_ms_max']} ms; without variants: {left_at_end} at the end, "
        f"{left_later} 10 s later; {len(flood.errors)} errors",
        file=sys.stderr,
    )
    for error in flood.errors[:10]:
        print(f"flood: {error}", file=sys.stderr)
    if opts.out:
        write_markdown(opts.out, result)
    return 1 if flood.errors else 0


def write_markdown(path, r):
    def met(ok):
        return "yes" if ok else "**no**"

    lines = [
        f"9. A flood of new pages with browsers reading them (compressor threads: {r['threads']}): "
        f"{r['stored']:,} pages stored at {r['rate']:,.0f}/s "
        f"for {r['seconds']} s through MISSes, {r['readers']} browsers "
        f"(`Accept-Encoding: gzip, deflate, br` and `gzip` in turn) reading the {r['window']} "
        f"most recent at {r['reads_per_s']:,.0f}/s in all.",
        "",
        "| Measure | Value | Target | Met |",
        "| --- | ---: | ---: | --- |",
        f"| bytes served to gzip/br browsers that were compressed | {r['bytes_share']} % "
        f"| ≥ 90 % | {met(r['bytes_share'] is not None and r['bytes_share'] >= 90)} |",
        f"| responses to them that were compressed | {r['responses_share']} % | | |",
        f"| store to first variants, p50 / p90 / p99 / max | {r['delay_ms_p50']} / "
        f"{r['delay_ms_p90']} / {r['delay_ms_p99']} / {r['delay_ms_max']} ms | ≤ 1 s "
        f"| {met(r['delay_ms_p99'] is not None and r['delay_ms_p99'] <= 1000)} |",
        f"| pages without variants when the flood ended / 10 s later "
        f"| {r['without_variants_at_end']} / {r['without_variants_10s_later']} | | |",
        "",
    ]
    with open(path, "a") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())
