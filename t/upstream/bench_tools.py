#!/usr/bin/env python3
"""Helpers of ci/bench (standard library only): parse wrk's output into a
results file (JSON lines), build page trees, render the nginx snippet that
answers the page from memory, and turn the results into the report table.

    bench_tools.py wrk OUTPUT CASE VARIANT RESULTS [--min-bytes N] [--max-bytes N]
                       [--cpu-ticks N] [--bg-cpu-ticks N]
    bench_tools.py wrk-requests OUTPUT            requests answered in a wrk run
    bench_tools.py value RESULTS NAME NUMBER
    bench_tools.py body PAGE [ENCODING]           page file -> its body (identity, or
                                                  the stored gzip/br/zstd variant)
    bench_tools.py variants DIR                   pages under DIR that hold variants
    bench_tools.py encoded HEADERS BODY ENCODING EXPECTED [SAME]
                                                  checks a response of case 8 (status,
                                                  Content-Encoding, Vary, decoded body;
                                                  SAME: the exact bytes expected), prints
                                                  the body's bytes
    bench_tools.py tree ROOT TEMPLATE PREFIX COUNT
    bench_tools.py copies ROOT PREFIX COUNT BODY  plain files PREFIX/<i/1000>/<i>/index.html
    bench_tools.py pages PORT PREFIX COUNT BODY STATUS [--every K]
                                                  asks for those pages, checks each
    bench_tools.py strace OUTPUT REQUESTS         `strace -c` output -> system calls
                                                  per request (and which, on stderr)
    bench_tools.py count DIR                      files under DIR
    bench_tools.py memory-conf ARTICLE maps|body  nginx serving ARTICLE from memory
    bench_tools.py last RESULTS FIELD             a field of the last record
    bench_tools.py monitor PID OUTPUT             CPU time of processes outside
                                                  PID's tree, until PID ends
    bench_tools.py others OUTPUT                  the monitor's totals, in words
    bench_tools.py stampede LOADGEN RENDERS WAY RESULTS
                                                  checks and records a run of case 7
                                                  (loadgen's JSON, the app's renders)
    bench_tools.py visitors LOADGEN COUNT SYSTEM RESULTS
                                                  checks and records a run of case 10
                                                  (loadgen's JSON, the app's count)
    bench_tools.py report RESULTS                 the report (Markdown)
    bench_tools.py write REPORT MARKDOWN          put REPORT between MARKDOWN's markers
"""
import json
import os
import re
import statistics
import sys

# --------------------------------------------------------------------------
# wrk output
# --------------------------------------------------------------------------

UNITS_S = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
UNITS_B = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3, "TB": 1024**4}


def _seconds(text):
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text)
    if not m:
        raise ValueError(f"unexpected time {text!r}")
    return float(m.group(1)) * UNITS_S[m.group(2)]


def parse_wrk(text):
    """Requests/s, latency p50/p99 (ms), requests, bytes, errors."""

    def find(pattern, default=None):
        m = re.search(pattern, text, re.M)
        if m is None:
            if default is None:
                raise ValueError(f"wrk output lacks {pattern!r}:\n{text}")
            return default
        return m.groups()

    rps = float(find(r"^Requests/sec:\s+([\d.]+)")[0])
    p50 = _seconds(find(r"^\s+50%\s+(\S+)")[0]) * 1e3
    p99 = _seconds(find(r"^\s+99%\s+(\S+)")[0]) * 1e3
    requests, seconds, size, unit = find(
        r"^\s+(\d+) requests in ([\d.]+\w+), ([\d.]+)(\w+) read"
    )
    non2xx = int(find(r"^\s+Non-2xx or 3xx responses: (\d+)", ("0",))[0])
    errors = find(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)",
        ("0", "0", "0", "0"),
    )
    return {
        "rps": rps,
        "p50": p50,
        "p99": p99,
        "requests": int(requests),
        "seconds": _seconds(seconds),
        "bytes": float(size) * UNITS_B[unit],
        "non2xx": non2xx,
        "connect_errors": int(errors[0]),
        "timeouts": int(errors[3]),
    }


def cmd_wrk(output, case, variant, results, *opts):
    """Checks and records a wrk run. Options: --min-bytes N and --max-bytes N
    (per response, headers included: the max says a compressed variant was
    sent, not the identity page), --cpu-ticks N (the measured nginx
    worker's event-loop thread's CPU time during the run), --bg-cpu-ticks N
    (its other threads': the module's compressor)."""
    options = dict(zip(opts[::2], (int(v) for v in opts[1::2])))
    min_bytes = options.get("--min-bytes", 0)
    max_bytes = options.get("--max-bytes", 0)
    with open(output) as f:
        run = parse_wrk(f.read())
    per_request = run["bytes"] / max(run["requests"], 1)
    cpu = ""
    if "--cpu-ticks" in options:
        ticks_per_s = os.sysconf("SC_CLK_TCK")
        run["cpu_us"] = options["--cpu-ticks"] / ticks_per_s * 1e6 / max(run["requests"], 1)
        cpu = f", worker CPU {run['cpu_us']:.1f} µs each"
    if options.get("--bg-cpu-ticks"):
        run["bg_cpu_s"] = options["--bg-cpu-ticks"] / os.sysconf("SC_CLK_TCK")
        cpu += f", compressor thread {run['bg_cpu_s'] / max(run['seconds'], 1e-9) * 100:.0f}% of a core"
    print(
        f"    {case:<16} {variant:<8} {run['rps']:>10.0f} req/s"
        f"  p50 {run['p50']:7.3f} ms  p99 {run['p99']:7.3f} ms"
        f"  ({run['requests']} requests, {per_request / 1024:.1f} KiB{cpu})",
        file=sys.stderr,
    )
    problems = []
    if run["requests"] == 0:
        problems.append("no request completed")
    if run["non2xx"]:
        problems.append(f"{run['non2xx']} responses were not 2xx/3xx")
    if run["connect_errors"] or run["timeouts"]:
        problems.append(
            f"{run['connect_errors']} connect errors, {run['timeouts']} timeouts"
        )
    # wrk rounds the bytes it read to two decimals of its unit
    if min_bytes and per_request < min_bytes * 0.99:
        problems.append(
            f"{per_request:.0f} bytes per response, expected at least {min_bytes}"
        )
    if max_bytes and per_request > max_bytes * 1.01:
        problems.append(
            f"{per_request:.0f} bytes per response, expected at most {max_bytes}"
        )
    if problems:
        sys.exit(f"bench: {case}/{variant}: " + "; ".join(problems))
    run.update(kind="run", case=case, variant=variant)
    with open(results, "a") as f:
        f.write(json.dumps(run) + "\n")


def cmd_wrk_requests(output):
    with open(output) as f:
        print(parse_wrk(f.read())["requests"])


def cmd_value(results, name, number):
    with open(results, "a") as f:
        f.write(json.dumps({"kind": "value", "name": name, "value": float(number)}) + "\n")


# --------------------------------------------------------------------------
# Pages and trees
# --------------------------------------------------------------------------


def page_parts(page):
    """A page file's bodies by encoding: "identity", and the variants a page
    with compressed variants ("static_gen 2") holds after it (its header
    names the identity body's length and each variant's offset and length
    from the body's start)."""
    with open(page, "rb") as f:
        data = f.read()
    header_end = data.index(b"\n\n") + 2
    body = data[header_end:]
    parts = {"identity": body}
    for line in data[:header_end].decode("latin-1").splitlines():
        if line.startswith("identity: "):
            parts["identity"] = body[: int(line[len("identity: "):])]
        elif line.startswith("variant: ") and data.startswith(b"static_gen 2\n"):
            encoding, start, length = line[len("variant: "):].split()
            parts[encoding] = body[int(start) : int(start) + int(length)]
    return parts


def cmd_body(page, encoding="identity"):
    parts = page_parts(page)
    if encoding not in parts:
        sys.exit(f"bench: {page} holds no {encoding} variant (it has {', '.join(parts)})")
    sys.stdout.buffer.write(parts[encoding])


def cmd_variants(directory):
    """Pages under DIRECTORY whose file holds compressed variants."""
    count = 0
    for parent, _, files in os.walk(directory):
        for name in files:
            try:
                with open(os.path.join(parent, name), "rb") as f:
                    count += f.read(13) == b"static_gen 2\n"
            except OSError:  # removed meanwhile
                pass
    print(count)


def decode(encoding, data):
    """The body of a response in ENCODING: gzip with Python's own module,
    br and zstd with the `brotli` and `zstd` command-line tools (Debian's
    packages: other implementations than the module's crates)."""
    import gzip
    import subprocess

    if encoding == "identity":
        return data
    if encoding == "gzip":
        return gzip.decompress(data)
    tool = {"br": ["brotli", "-d", "-c"], "zstd": ["zstd", "-d", "-c", "-q"]}[encoding]
    return subprocess.run(tool, input=data, stdout=subprocess.PIPE, check=True).stdout


def cmd_encoded(headers_file, body_file, encoding, expected_file, same_file=None):
    """Checks a response of case 8 to a request with `Accept-Encoding:
    ENCODING` (none for identity): status 200, `Content-Encoding` the
    requested coding (absent for identity), `Vary: Accept-Encoding`, a body
    that decodes to the file EXPECTED, and (SAME) the very bytes of that
    file. Prints the body's length."""
    with open(headers_file, "rb") as f:
        lines = f.read().decode("latin-1").split("\r\n")
    with open(body_file, "rb") as f:
        body = f.read()
    with open(expected_file, "rb") as f:
        expected = f.read()
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers.setdefault(name.strip().lower(), []).append(value.strip())
    problems = []
    if " 200 " not in lines[0] + " ":
        problems.append(f"status {lines[0]!r}")
    got = ",".join(headers.get("content-encoding", []))
    if got != ("" if encoding == "identity" else encoding):
        problems.append(f"Content-Encoding {got!r}")
    vary = [v.strip().lower() for v in ",".join(headers.get("vary", [])).split(",")]
    if "accept-encoding" not in vary:
        problems.append(f"Vary {headers.get('vary')!r}")
    try:
        decoded = decode(got or "identity", body)
    except Exception as e:  # a body that does not decode
        problems.append(f"body does not decode as {got or 'identity'} ({e})")
    else:
        if decoded != expected:
            problems.append(f"decoded body ({len(decoded)} bytes) is not the page ({len(expected)} bytes)")
    if same_file is not None:
        with open(same_file, "rb") as f:
            if f.read() != body:
                problems.append(f"body is not the bytes of {same_file}")
    if int(headers.get("content-length", ["-1"])[-1]) != len(body):
        problems.append(f"Content-Length {headers.get('content-length')} for {len(body)} bytes")
    if problems:
        sys.exit(f"bench: {encoding}: " + "; ".join(problems))
    print(len(body))


def cmd_tree(root, template, prefix, count):
    """COUNT pages /PREFIX/<i // 1000>/<i>/ (Django-style URIs, one directory
    per page), each the template page with its own uri line, as the module
    writes them."""
    with open(template, "rb") as f:
        data = f.read()
    header_end = data.index(b"\n\n") + 2
    header, body = data[:header_end], data[header_end:]
    for i in range(int(count)):
        uri = f"/{prefix}/{i // 1000}/{i}/"
        directory = os.path.join(root, prefix, str(i // 1000), str(i))
        os.makedirs(directory, mode=0o755, exist_ok=True)
        own = re.sub(rb"(?m)^uri: .*$", b"uri: " + uri.encode(), header)
        with open(os.path.join(directory, "index.html"), "wb") as f:
            f.write(own + body)


def cmd_tagged_tree(root, template, prefix, count):
    """COUNT pages as `tree` writes them, each with a `tags:` line: page i
    carries `p<i>`, the first 100 also `hundred`, the first 10,000 also
    `tenk` (the pages a tag purge of each covers: 1, 100, 10,000)."""
    with open(template, "rb") as f:
        data = f.read()
    header_end = data.index(b"\n\n") + 2
    header, body = data[:header_end], data[header_end:]
    header = re.sub(rb"(?m)^tags: .*\n", b"", header)
    for i in range(int(count)):
        uri = f"/{prefix}/{i // 1000}/{i}/"
        tags = f"p{i}" + (" hundred" if i < 100 else "") + (" tenk" if i < 10000 else "")
        directory = os.path.join(root, prefix, str(i // 1000), str(i))
        os.makedirs(directory, mode=0o755, exist_ok=True)
        own = re.sub(rb"(?m)^uri: .*$", b"uri: " + uri.encode(), header)
        own = own[:-1] + b"tags: " + tags.encode() + b"\n\n"
        with open(os.path.join(directory, "index.html"), "wb") as f:
            f.write(own + body)


def spread_uri(prefix, i):
    """The URI of page I of a spread tree: Django-style, a directory per
    page, a thousand pages per parent directory."""
    return f"/{prefix}/{i // 1000}/{i}/"


def cmd_copies(root, prefix, count, body):
    """COUNT plain files ROOT/PREFIX/<i // 1000>/<i>/index.html with the
    bytes of BODY: what nginx's static serving reads for the URIs of a
    spread tree (try_files $uri/index.html)."""
    with open(body, "rb") as f:
        data = f.read()
    for i in range(int(count)):
        directory = os.path.join(root, spread_uri(prefix, i).strip("/"))
        os.makedirs(directory, mode=0o755, exist_ok=True)
        with open(os.path.join(directory, "index.html"), "wb") as f:
            f.write(data)


def cmd_pages(port, prefix, count, body, status, *opts):
    """Asks 127.0.0.1:PORT for every page of a spread tree (i < COUNT; with
    --every K, every K-th page and the last), over one kept-alive
    connection, and checks each answer: 200, the bytes of BODY, and
    X-Bench STATUS ("-": none). Through a module server's twin, STATUS MISS
    generates the pages and HIT checks they are stored; through a
    proxy_cache twin, MISS fills the cache. A page answered MISS where HIT
    is expected is asked again for up to 2 s (a page stored by a MISS is
    installed once the response is complete)."""
    import http.client
    import time

    with open(body, "rb") as f:
        expected = f.read()
    want = "" if status == "-" else status
    count = int(count)
    every = int(dict(zip(opts[::2], opts[1::2])).get("--every", 1))
    indexes = sorted(set(range(0, count, every)) | {count - 1})
    conn = http.client.HTTPConnection("127.0.0.1", int(port), timeout=30)
    for i in indexes:
        uri = spread_uri(prefix, i)
        deadline = time.monotonic() + 2
        while True:
            conn.request("GET", uri)
            response = conn.getresponse()
            data = response.read()
            got = response.getheader("X-Bench") or ""
            if got == want or want != "HIT" or time.monotonic() > deadline:
                break
            time.sleep(0.02)
        problems = []
        if response.status != 200:
            problems.append(f"status {response.status}")
        if got != want:
            problems.append(f"X-Bench {got!r}, expected {want!r}")
        if data != expected:
            problems.append(f"{len(data)} bytes, not the page ({len(expected)})")
        if problems:
            sys.exit(f"bench: GET {uri} on port {port}: " + "; ".join(problems))
    print(len(indexes))


def cmd_strace(output, requests):
    """System calls per request from `strace -c -f` OUTPUT over a run of
    REQUESTS requests; the calls made at least once per 20 requests, per
    request, go to stderr."""
    requests = max(int(requests), 1)
    total, calls = None, []
    with open(output) as f:
        for line in f:
            fields = line.split()
            # % time, seconds, usecs/call, calls, [errors,] syscall
            if len(fields) < 5 or not fields[3].isdigit():
                continue
            if fields[-1] == "total":
                total = int(fields[3])
            else:
                calls.append((int(fields[3]), fields[-1]))
    if total is None:
        sys.exit(f"bench: no strace summary in {output}")
    calls.sort(reverse=True)
    detail = ", ".join(f"{name} {n / requests:.2f}" for n, name in calls if n * 20 >= requests)
    print(f"{total / requests:.2f}")
    print(f"({detail})", file=sys.stderr)


def cmd_count(directory):
    print(sum(len(files) for _, _, files in os.walk(directory)))


def cmd_memory_conf(article, part):
    """nginx answering the article from memory. A configuration string is
    limited to 4 KB, so the body is split over constant `map` values
    (part "maps", at http level) that `return` joins again (part "body",
    the argument of `return 200`)."""
    with open(article) as f:
        text = f.read()
    if set("\"$\\") & set(text):
        sys.exit("bench: the article cannot be inlined into nginx.conf")
    chunks = [text[i : i + 3000] for i in range(0, len(text), 3000)]
    if part == "maps":
        for n, chunk in enumerate(chunks):
            print(f'map $scheme $bench_body_{n} {{\n    default "{chunk}";\n}}')
    else:
        print('"' + "".join(f"$bench_body_{n}" for n in range(len(chunks))) + '"')


def cmd_last(results, field):
    """A field of the last record."""
    with open(results) as f:
        print(json.loads(f.readlines()[-1])[field])


# --------------------------------------------------------------------------
# Other load on the machine
# --------------------------------------------------------------------------


def _processes():
    """pid -> (ppid, comm, utime + stime in clock ticks)."""
    procs = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        procs[int(entry)] = (int(fields[1]), comm, int(fields[11]) + int(fields[12]))
    return procs


def cmd_monitor(root_pid, output):
    """Every second, adds up the CPU time of the processes that are not
    ROOT_PID or its descendants (the benchmark's own), by command name, and
    writes the totals (seconds) to OUTPUT as JSON when ROOT_PID has ended
    or on SIGTERM. Processes that start and end within a second are missed."""
    import signal
    import time

    root_pid = int(root_pid)
    tick = os.sysconf("SC_CLK_TCK")
    others = {}
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    before = _processes()
    while not stop and os.path.exists(f"/proc/{root_pid}"):
        time.sleep(1)
        now = _processes()
        ours = {root_pid, os.getpid()}
        changed = True
        while changed:
            changed = False
            for pid, (ppid, _, _) in now.items():
                if ppid in ours and pid not in ours:
                    ours.add(pid)
                    changed = True
        for pid, (_, comm, ticks) in now.items():
            if pid in ours or pid not in before or before[pid][1] != comm:
                continue
            used = ticks - before[pid][2]
            if used > 0:
                others[comm] = others.get(comm, 0) + used / tick
        before = now
    with open(output, "w") as f:
        json.dump(others, f)


def cmd_others(output):
    with open(output) as f:
        others = json.load(f)
    total = sum(others.values())
    top = sorted(others.items(), key=lambda kv: -kv[1])
    named = ", ".join(f"`{comm}` {sec:.0f} s" for comm, sec in top[:4] if sec >= 0.5)
    print(f"{total:.0f} CPU-seconds" + (f" ({named})" if named else ""))


# --------------------------------------------------------------------------
# Case 7: a purge under load
# --------------------------------------------------------------------------

# the ways of case 7, in the report's order: (key, label)
WAYS = [
    ("none", "no new directives"),
    ("lock", "`static_gen_lock on`"),
    ("stale", "`static_gen_lock on`, `static_gen_stale 30s`"),
]
# targets: upstream requests per regenerated page (ways), worst slice after
# the purge / median before (ways)
RENDERS_TARGET = (1.05, ("lock", "stale"))
SLICE_TARGET = (0.8, ("stale",))


def stampede(load, renders):
    """Case 7's measures of one way, from loadgen's statistics and the
    app's renders (each with the time its request arrived)."""
    purge = load["purge"]
    purge_unix = load["t0_unix"] + purge["sent_s"]
    slices = load["slices"]
    at = purge["slice"]
    before = slices[:at]
    after = slices[at:]
    base = median(before)
    later = [r for r in renders["renders"] if r[0] >= purge_unix]
    pages = {path for _, path in later}
    return {
        "slices": slices,
        "slices_miss": load["slices_MISS"],
        "slices_stale": load["slices_STALE"],
        "purge_slice": at,
        "slice_before": base,
        "worst_after": min(after) if after else None,
        "worst_ratio": min(after) / base if after and base else None,
        "renders_before": len(renders["renders"]) - len(later),
        "renders_after": len(later),
        "pages_rendered_after": len(pages),
        "renders_per_page": len(later) / len(pages) if pages else None,
        "pages_regenerated": load["after_purge"]["pages_regenerated"],
        "pages_requested": load["after_purge"]["pages_requested"],
        "last_regenerated_s": load["after_purge"]["last_regenerated_s"],
        "p99": load["latency_ms"]["p99"],
        "p99_after": load["latency_after_ms"]["p99"],
        "max_after": load["latency_after_ms"]["max"],
        "wakeup": load["wakeup_ms"],
        "statuses_before": load["statuses_before"],
        "statuses_after": load["statuses_after"],
        "purge_ms": (purge["answered_s"] - purge["sent_s"]) * 1e3,
        "purge_body": purge["body"],
        "requests": load["requests"],
        "seconds": load["seconds"],
        "clients": load["clients"],
        "pages": load["pages"],
        "zipf": load["zipf"],
        "warm": load.get("warm", {}),
    }


def cmd_stampede(load_file, renders_file, way, results):
    """Checks a run of case 7 and adds its measures to the results; with
    errors (failed connections, other statuses than 200, a failed purge),
    they are recorded too and shown in the report, and the exit status is 3
    (ci/bench goes on with the other ways, then fails)."""
    with open(load_file) as f:
        load = json.load(f)
    with open(renders_file) as f:
        renders = json.load(f)
    problems = []
    if load["requests"] == 0:
        problems.append("no request completed")
    if load["errors"]:
        problems.append(f"{load['errors']} errors ({load['first_error']})")
    if load["non200"]:
        problems.append(f"{load['non200']} responses were not 200")
    if load["body_min"] < 4096:
        problems.append(f"a response of {load['body_min']} bytes (the pages have about 5 KB)")
    purge = load.get("purge") or {}
    if purge.get("status") != 200 or '"status":"ok"' not in purge.get("body", ""):
        problems.append(f"purge: {purge.get('status')} {purge.get('error') or purge.get('body')}")
    if problems:
        print(f"bench: stampede/{way}: " + "; ".join(problems), file=sys.stderr)
    try:
        m = stampede(load, renders)
    except (KeyError, IndexError, TypeError, ValueError) as e:
        sys.exit(f"bench: stampede/{way}: incomplete results ({e!r})")
    wake = m["wakeup"]
    print(
        f"    stampede   {way:<8} {median(m['slices']):>10.0f} req/s (median slice)"
        f"  worst after purge {m['worst_ratio']:.2f} × before"
        f"  renders/page {fmt(m['renders_per_page'], '.2f')} ({m['renders_after']}"
        f" / {m['pages_rendered_after']})  p99 {m['p99']:.1f} ms, after {m['p99_after']:.1f} ms"
        f"  wake-up p50 {fmt(wake['p50'], '.2f')} p99 {fmt(wake['p99'], '.2f')} ms"
        f" ({wake['waiters']} waiters)",
        file=sys.stderr,
    )
    print(f"               slices: {' '.join(f'{x:.0f}' for x in m['slices'])}", file=sys.stderr)
    m.update(kind="stampede", way=way, problems="; ".join(problems))
    with open(results, "a") as f:
        f.write(json.dumps(m) + "\n")
    if problems:
        sys.exit(3)


def purge_mode(body):
    try:
        return json.loads(body).get("mode", "?")
    except ValueError:
        return "?"


def stampede_report(ways, info):
    """Case 7's section of the report: the three ways side by side."""
    present = [(key, label) for key, label in WAYS if key in ways]
    if not present:
        return []
    lines = []
    out = lines.append
    first = ways[present[0][0]]
    app = ""
    if "stampede_app_workers" in info:
        workers, ms = int(info["stampede_app_workers"]), int(info["stampede_app_ms"])
        app = (f" an app that renders {workers} pages at once, {ms} ms each "
               f"(about {workers * 1000 // ms} pages/s, `bench_app.py serve-limited`);")
    out(f"Case 7, a purge under load: {first['pages']} pages, {first['clients']} clients "
        f"(`tools/src/bin/loadgen.rs`, one thread and kept-alive connection each, "
        f"pages by Zipf's law, s = {first['zipf']:g});{app} every page generated first, "
        f"then {first['seconds']:g} s of load with a whole-tree purge at "
        f"{first['purge_slice']} s; each way on a tree of its own, in turn.")
    out("")
    out("| Second | " + " | ".join(label for _, label in present) + " |")
    out("| ---: | " + " | ".join("---:" for _ in present) + " |")
    n = max(len(ways[key]["slices"]) for key, _ in present)
    for i in range(n):
        second = f"{i}" + (" (purge)" if i == first["purge_slice"] else "")
        cells = []
        for key, _ in present:
            m = ways[key]
            if i >= len(m["slices"]):
                cells.append("")
                continue
            cell = f"{m['slices'][i]:,.0f}"
            extra = []
            if m["slices_miss"][i]:
                extra.append(f"{m['slices_miss'][i]:,} MISS")
            if m["slices_stale"][i]:
                extra.append(f"{m['slices_stale'][i]:,} STALE")
            cells.append(cell + (f" ({', '.join(extra)})" if extra else ""))
        out(f"| {second} | " + " | ".join(cells) + " |")
    out("")
    out("Requests/s answered in each second of the run (with the `MISS` and "
        "`STALE` responses among them, from `X-Static-Gen`).")
    out("")

    def row(label, cell, target=""):
        out(f"| {label} | " + " | ".join(cell(ways[key], key) for key, _ in present)
            + f" | {target} |")

    def verdict(value, target, ok_ways, key, at_most=False):
        if value is None or key not in ok_ways:
            return ""
        value = round(value, 2)  # as shown
        ok = value <= target if at_most else value >= target
        return " (yes)" if ok else " (**no**)"

    out("| Measure | " + " | ".join(label for _, label in present) + " | Target |")
    out("| --- | " + " | ".join("---:" for _ in present) + " | --- |")
    target, ok_ways = RENDERS_TARGET
    row("upstream requests per regenerated page after the purge (renders / pages)",
        lambda m, k: f"{fmt(m['renders_per_page'], '.2f')} ({m['renders_after']:,} / "
        f"{m['pages_rendered_after']:,})" + verdict(m["renders_per_page"], target, ok_ways, k, True),
        f"≤ {target:.2f} with the lock")
    target, ok_ways = SLICE_TARGET
    row("worst second after the purge / median second before",
        lambda m, k: f"{fmt(m['worst_ratio'], '.2f')} × ({m['worst_after']:,.0f} / "
        f"{m['slice_before']:,.0f})" + verdict(m["worst_ratio"], target, ok_ways, k),
        f"≥ {target:.2f} × with lock and stale")
    row("latency p99, whole run / after the purge",
        lambda m, k: f"{m['p99']:.1f} / {m['p99_after']:.1f} ms")
    row("slowest response after the purge", lambda m, k: f"{m['max_after']:,.0f} ms")
    row("waiters' wake-up after the page's `MISS`: median / p99 (waiters)",
        lambda m, k: (f"{fmt(m['wakeup']['p50'], '.2f')} / {fmt(m['wakeup']['p99'], '.2f')} ms "
                      f"({m['wakeup']['waiters']:,})") if m["wakeup"]["waiters"] else "no waiters")
    row("pages regenerated after the purge / requested",
        lambda m, k: f"{m['pages_regenerated']} / {m['pages_requested']}")
    row("last page regenerated, after the purge",
        lambda m, k: f"{fmt(m['last_regenerated_s'], '.2f')} s")
    row("responses after the purge: HIT / MISS / STALE",
        lambda m, k: " / ".join(f"{m['statuses_after'][g]:,}" for g in ("HIT", "MISS", "STALE")))
    row("renders before the purge (all pages were HITs)",
        lambda m, k: f"{m['renders_before']}", "0")
    row("purge reply",
        lambda m, k: f"{m['purge_ms']:.1f} ms, {purge_mode(m['purge_body'])}")
    if any(ways[key].get("problems") for key, _ in present):
        row("**errors** (the benchmark failed)", lambda m, k: m.get("problems") or "none", "none")
    out("")
    out("Upstream requests per page: the app's renders whose request arrived "
        "after the purge was sent, over the distinct pages among them. "
        "Wake-up: for each page, from the first response after the purge that "
        "regenerated it (`MISS`) to the responses of the requests for it that "
        "were sent before that one arrived and were answered `HIT` after it "
        "(the lock's waiters), as the clients saw them.")
    return lines


# --------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------

# (case, variant key, label) in the order of the table; the variant keys are
# what ci/bench records.
ROWS = [
    ("1", "hit-static", "module", "module HIT"),
    ("1", "hit-static", "static", "nginx static file, `try_files`"),
    ("1", "hit-static", "static-ofc", "nginx static file, `try_files`, `open_file_cache`"),
    ("1", "hit-static", "memory", "nginx `return 200` from memory (ceiling)"),
    ("1", "hit-static-spread", "module", "module HIT, SPREAD pages"),
    ("1", "hit-static-spread", "static", "nginx static file, `try_files`, SPREAD pages"),
    ("1", "hit-static-spread", "static-ofc", "nginx static file, `try_files`, `open_file_cache`, SPREAD pages"),
    ("1", "hit-static-few", "module", "module HIT, FEW pages"),
    ("1", "hit-static-few", "static", "nginx static file, `try_files`, FEW pages"),
    ("1", "hit-static-few", "static-ofc", "nginx static file, `try_files`, `open_file_cache`, FEW pages"),
    ("2", "hit-pcache", "module", "module HIT"),
    ("2", "hit-pcache", "pcache", "`proxy_cache` HIT"),
    ("2", "hit-pcache", "pcache-ofc", "`proxy_cache` HIT, `open_file_cache`"),
    ("2", "hit-pcache", "varnish", "Varnish 7.1 HIT"),
    ("2", "hit-pcache-spread", "module", "module HIT, SPREAD pages"),
    ("2", "hit-pcache-spread", "pcache", "`proxy_cache` HIT, SPREAD pages"),
    ("2", "hit-pcache-spread", "pcache-ofc", "`proxy_cache` HIT, `open_file_cache`, SPREAD pages"),
    ("2", "hit-pcache-few", "module", "module HIT, FEW pages"),
    ("2", "hit-pcache-few", "pcache", "`proxy_cache` HIT, FEW pages"),
    ("2", "hit-pcache-few", "pcache-ofc", "`proxy_cache` HIT, `open_file_cache`, FEW pages"),
    ("3", "miss", "module", "module MISS, page stored"),
    ("3", "miss", "nocomp", "module MISS, page stored, `static_gen_compress off`"),
    ("3", "miss", "pcache", "`proxy_cache` MISS, response stored"),
    ("3", "miss", "proxy", "plain `proxy_pass`"),
    ("4", "app", "app", "the app alone (APP)"),
    ("4", "app", "module", "module HIT in front of the app"),
    ("5", "deletion", "without", "module HIT, no deletion running"),
    ("5", "deletion", "during", "module HIT during background deletion"),
    ("6", "mix", "mix", "mixed HIT/MISS/purge load (memory run)"),
    ("8", "browser-identity", "module", "nginx 1.22: module HIT, no `Accept-Encoding`"),
    ("8", "browser-identity", "static", "nginx 1.22: static file, `try_files`, `gzip_static`/`brotli_static` on"),
    ("8", "browser-identity", "static-ofc", "nginx 1.22: static file, `try_files`, `gzip_static`/`brotli_static` on, `open_file_cache`"),
    ("8", "browser-identity", "pcache", "nginx 1.22: `proxy_cache` HIT"),
    ("8", "browser-identity", "pcache-ofc", "nginx 1.22: `proxy_cache` HIT, `open_file_cache`"),
    ("8", "browser-gzip", "module", "nginx 1.22: module HIT, `Accept-Encoding: gzip`"),
    ("8", "browser-gzip", "static", "nginx 1.22: `gzip_static`, `.gz` copy"),
    ("8", "browser-gzip", "static-ofc", "nginx 1.22: `gzip_static`, `.gz` copy, `open_file_cache`"),
    ("8", "browser-gzip", "pcache", "nginx 1.22: `proxy_cache` HIT, gzip"),
    ("8", "browser-gzip", "pcache-ofc", "nginx 1.22: `proxy_cache` HIT, gzip, `open_file_cache`"),
    ("8", "browser-gzip", "varnish", "Varnish 7.1 HIT, gzip (stored gzipped; Varnish has no br)"),
    ("8", "browser-br", "module", "nginx 1.22: module HIT, `Accept-Encoding: br`"),
    ("8", "browser-br", "static", "nginx 1.22: `brotli_static`, `.br` copy"),
    ("8", "browser-br", "static-ofc", "nginx 1.22: `brotli_static`, `.br` copy, `open_file_cache`"),
    ("8", "browser-br", "pcache", "nginx 1.22: `proxy_cache` HIT, br"),
    ("8", "browser-br", "pcache-ofc", "nginx 1.22: `proxy_cache` HIT, br, `open_file_cache`"),
    ("8", "browser-zstd", "module", "nginx 1.22: module HIT, `Accept-Encoding: zstd` (module only)"),
]

# case 8's codings, in the report's order
BROWSER_CODINGS = ["identity", "gzip", "br", "zstd"]

# (label, case, numerator, denominator, target, comparison)
RATIOS = [
    ("module HIT / static `try_files`", "hit-static", "module", "static", 1.0),
    ("module HIT / `return 200` from memory", "hit-static", "module", "memory", None),
    ("`return 200` from memory / static `try_files`", "hit-static", "memory", "static", None),
    ("module HIT / static `try_files` + `open_file_cache`", "hit-static", "module", "static-ofc", 1.0),
    ("module HIT / `proxy_cache` HIT", "hit-pcache", "module", "pcache", 1.0),
    ("module HIT / `proxy_cache` HIT + `open_file_cache`", "hit-pcache", "module", "pcache-ofc", 1.0),
    ("module HIT / Varnish HIT", "hit-pcache", "module", "varnish", 1.0),
    ("SPREAD pages: module HIT / static `try_files`", "hit-static-spread", "module", "static", 1.0),
    ("SPREAD pages: module HIT / static `try_files` + `open_file_cache`",
     "hit-static-spread", "module", "static-ofc", 1.0),
    ("SPREAD pages: module HIT / `proxy_cache` HIT", "hit-pcache-spread", "module", "pcache", 1.0),
    ("SPREAD pages: module HIT / `proxy_cache` HIT + `open_file_cache`",
     "hit-pcache-spread", "module", "pcache-ofc", 1.0),
    ("FEW pages: module HIT / static `try_files`", "hit-static-few", "module", "static", 1.0),
    ("FEW pages: module HIT / static `try_files` + `open_file_cache`",
     "hit-static-few", "module", "static-ofc", 1.0),
    ("FEW pages: module HIT / `proxy_cache` HIT", "hit-pcache-few", "module", "pcache", 1.0),
    ("FEW pages: module HIT / `proxy_cache` HIT + `open_file_cache`",
     "hit-pcache-few", "module", "pcache-ofc", 1.0),
    ("module MISS + store / `proxy_pass`", "miss", "module", "proxy", 0.95),
    ("module MISS, compression on (default `gzip br`) / `static_gen_compress off`",
     "miss", "module", "nocomp", None),
    ("module MISS + store / `proxy_cache` MISS + store", "miss", "module", "pcache", None),
    ("`proxy_cache` MISS + store / `proxy_pass`", "miss", "pcache", "proxy", None),
    ("module HIT in front of the app / the app alone", "app", "module", "app", None),
    ("nginx 1.22, no `Accept-Encoding`: module HIT / static `try_files`",
     "browser-identity", "module", "static", 1.0),
    ("nginx 1.22, no `Accept-Encoding`: module HIT / `proxy_cache` HIT",
     "browser-identity", "module", "pcache", 1.0),
    ("nginx 1.22, gzip: module HIT / `gzip_static`", "browser-gzip", "module", "static", 1.0),
    ("nginx 1.22, gzip: module HIT / `proxy_cache` HIT", "browser-gzip", "module", "pcache", 1.0),
    ("nginx 1.22, gzip: module HIT / Varnish HIT", "browser-gzip", "module", "varnish", 1.0),
    ("nginx 1.22, br: module HIT / `brotli_static`", "browser-br", "module", "static", 1.0),
    ("nginx 1.22, br: module HIT / `proxy_cache` HIT", "browser-br", "module", "pcache", 1.0),
    ("nginx 1.22, no `Accept-Encoding`: module HIT / static `try_files` + `open_file_cache`",
     "browser-identity", "module", "static-ofc", 1.0),
    ("nginx 1.22, no `Accept-Encoding`: module HIT / `proxy_cache` HIT + `open_file_cache`",
     "browser-identity", "module", "pcache-ofc", 1.0),
    ("nginx 1.22, gzip: module HIT / `gzip_static` + `open_file_cache`",
     "browser-gzip", "module", "static-ofc", 1.0),
    ("nginx 1.22, gzip: module HIT / `proxy_cache` HIT + `open_file_cache`",
     "browser-gzip", "module", "pcache-ofc", 1.0),
    ("nginx 1.22, br: module HIT / `brotli_static` + `open_file_cache`",
     "browser-br", "module", "static-ofc", 1.0),
    ("nginx 1.22, br: module HIT / `proxy_cache` HIT + `open_file_cache`",
     "browser-br", "module", "pcache-ofc", 1.0),
]


def load(results):
    runs, values, ways, compress = {}, {}, {}, []
    with open(results) as f:
        for line in f:
            rec = json.loads(line)
            if rec["kind"] == "run":
                runs.setdefault((rec["case"], rec["variant"]), []).append(rec)
            elif rec["kind"] == "stampede":
                ways[rec["way"]] = rec
            elif rec["kind"] == "compress":
                compress.append(rec)
            else:
                values.setdefault(rec["name"], []).append(rec["value"])
    return runs, values, ways, compress


def median(xs):
    return statistics.median(xs) if xs else None


def fmt(x, spec, missing="n/a"):
    return missing if x is None else format(x, spec)


def cpu_us(runs, case, variant):
    """Median worker CPU per request of a variant's runs, if measured."""
    return median([r["cpu_us"] for r in runs.get((case, variant), []) if "cpu_us" in r])


def met(value, target, below=False):
    if value is None or target is None:
        return ""
    return "yes" if (value < target if below else value >= target) else "**no**"


def browser_report(runs, values):
    """Case 8's bytes: each coding's body, and what each server sent per
    response (headers included, from wrk)."""
    present = [c for c in BROWSER_CODINGS if f"browser_bytes_{c}" in values]
    if not present:
        return []
    identity = values.get("browser_bytes_identity", [None])[-1]
    lines = [
        "Case 8 (nginx 1.22), the bytes of each answer: the body (the same bytes "
        "from every server, checked) and the whole response per request (wrk's bytes "
        "read over its requests, headers included; medians over the runs).",
        "",
        "| `Accept-Encoding` | Body bytes | Of identity | Response bytes: module "
        "| `gzip_static` / `brotli_static` | `proxy_cache` HIT |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]

    def per_response(coding, variant):
        rs = runs.get((f"browser-{coding}", variant))
        if not rs:
            return ""
        return f"{median([r['bytes'] / max(r['requests'], 1) for r in rs]):,.0f}"

    for coding in present:
        body = values[f"browser_bytes_{coding}"][-1]
        share = f"{body / identity * 100:.1f}%" if identity else ""
        label = "none" if coding == "identity" else f"`{coding}`"
        lines.append(
            f"| {label} | {body:,.0f} | {share} | {per_response(coding, 'module')} "
            f"| {per_response(coding, 'static')} | {per_response(coding, 'pcache')} |"
        )
    lines.append("")
    return lines


def compress_report(compress, values):
    """Case 4's table: the demo blog's pages compressed by the module's own
    code, per coding: bytes, and CPU time per page."""
    if not compress:
        return []
    first = compress[0]
    runs = next((r["runs"] for r in compress if "runs" in r), None)
    lines = [
        f"Case 4, compressed variants of the demo blog's own {first['pages']} pages "
        "(home, archive, about, a category, 20 articles; "
        f"{first['identity_bytes']:,} bytes in all), each compressed with the "
        "module's own code (`tools/src/bin/compress_pages.rs`); CPU time: the "
        "thread's (`CLOCK_THREAD_CPUTIME_ID`), per page the median of "
        f"{runs} run(s), nothing else measured meanwhile.",
        "",
        "| Coding (level) | Bytes of all pages | Of identity | Median page (of its identity) "
        "| CPU ms per page: median / mean / max |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for r in compress:
        label = "identity" if r["encoding"] == "identity" else f"`{r['encoding']}` {r['level']}"
        cpu = ""
        if "cpu_ms_median" in r:
            cpu = f"{r['cpu_ms_median']:.2f} / {r['cpu_ms_mean']:.2f} / {r['cpu_ms_max']:.2f}"
        lines.append(
            f"| {label} | {r['bytes']:,} | {r['bytes'] / r['identity_bytes'] * 100:.1f}% "
            f"| {r['median_bytes']:,} ({r['median_percent']:.1f}%) | {cpu} |"
        )
    lines.append("")
    return lines


def report(results):
    runs, values, ways, compress = load(results)
    info = {k: v[-1] for k, v in values.items()}
    app = "Django under gunicorn" if info.get("app_is_django") else "Python stdlib `http.server` app"
    if "app_page_bytes" in info:
        app += f", {info['app_page_bytes'] / 1024:.1f} KiB page"
    lines = []
    out = lines.append

    if runs:
        out("| # | What is measured | Requests/s | p50 ms | p99 ms | Spread | Runs "
            "| Worker CPU µs/req | Syscalls/req |")
        out("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")

    def pages(label):
        """A label with the spread trees' page counts."""
        for word, key in (("SPREAD", "spread_pages"), ("FEW", "spread_few")):
            if word in label and key in info:
                label = label.replace(word, f"{info[key]:,.0f}")
        return label

    for case_no, case, variant, label in ROWS:
        rs = runs.get((case, variant))
        if not rs:
            continue
        rps = [r["rps"] for r in rs]
        spread = (max(rps) - min(rps)) / median(rps) * 100 if median(rps) else 0
        out(
            f"| {case_no} | {pages(label.replace('APP', app))} | {median(rps):,.0f} "
            f"| {median([r['p50'] for r in rs]):.3f} | {median([r['p99'] for r in rs]):.3f} "
            f"| {spread:.0f}% | {len(rs)} | {fmt(cpu_us(runs, case, variant), '.1f', '')} "
            f"| {fmt(info.get(f'syscalls_{case}_{variant}'), '.2f', '')} |"
        )
    if runs:
        out("")
        out("Requests/s, p50 and p99 are medians over the runs; spread is "
            "(max - min) / median of the requests/s. Worker CPU is the user and "
            "system time of the measured nginx worker's event loop (its main "
            "thread; not the module's compressor thread) per request (median over "
            "the runs), in the cases measured one server at a time (1-4 and 8; "
            "not the app alone, which nginx does not serve). Syscalls/req: the "
            "worker's system calls (`strace -c -f` on it) over a short extra run "
            "of the variant after its measured runs, per request (cases 1 and 2).")
        out("")

    def ratio(case, num, den):
        a = runs.get((case, num))
        b = runs.get((case, den))
        if not a or not b:
            return None
        return median([r["rps"] for r in a]) / median([r["rps"] for r in b])

    out("| Measure | Result | Target | Met |")
    out("| --- | ---: | --- | --- |")
    measures = len(lines)
    for label, case, num, den, target in RATIOS:
        value = ratio(case, num, den)
        if value is None:
            continue
        out(f"| {pages(label)} | {value:.2f} × | {'≥ %.2f ×' % target if target else ''} "
            f"| {met(value, target)} |")

    sizes = sorted(int(k.rsplit("_", 1)[1]) for k in values if k.startswith("purge_ms_"))
    for size in sizes:
        ms = median(values[f"purge_ms_{size}"])
        target = 100.0 if size == max(sizes) else None
        out(f"| whole-tree purge of {size:,} pages: reply after | {ms:.1f} ms "
            f"| {'< 100 ms' if target else ''} | {met(ms, target, below=True)} |")
    tagged = int(info.get("tag_tree", 0))
    for n in sorted(int(k.rsplit("_", 1)[1]) for k in values if k.startswith("tag_purge_ms_")):
        ms = median(values[f"tag_purge_ms_{n}"])
        target = 10.0 if n == 100 else None
        out(f"| purge of a tag on {n:,} page{'s' if n != 1 else ''} of {tagged:,}: reply after | {ms:.1f} ms "
            f"| {'< 10 ms' if target else ''} | {met(ms, target, below=True) if target else ''} |")
    for size in sizes:
        deletion = median(values.get(f"deletion_s_{size}", []))
        out(f"| background deletion of those {size:,} pages took | {fmt(deletion, '.1f')} s | | |")
    during = runs.get(("deletion", "during"))
    without = runs.get(("deletion", "without"))
    if during and without:
        size = int(info["deletion_size"])
        early = int(info.get("deletion_ended_early", 0))
        value = ratio("deletion", "during", "without")
        note = f" (deletion ended before the window in {early} of {len(during)} runs)" if early else ""
        out(f"| module HIT during deletion of {size:,} pages / without{note} | {value:.2f} × "
            f"| ≥ 0.80 × | {met(value, 0.8) if not early else 'not measured'} |")
    if "rss_before_kib" in info:
        growth = info["rss_after_kib"] - info["rss_before_kib"]
        out(f"| worker RSS growth over {info['rss_requests']:,.0f} mixed requests "
            f"({info['rss_before_kib']:,.0f} → {info['rss_after_kib']:,.0f} KiB) "
            f"| {growth:+,.0f} KiB | < 1024 KiB | {met(growth, 1024, below=True)} |")
        anon = info["anon_after_kib"] - info["anon_before_kib"]
        out(f"| worker RssAnon growth over the same requests "
            f"({info['anon_before_kib']:,.0f} → {info['anon_after_kib']:,.0f} KiB) "
            f"| {anon:+,.0f} KiB | | |")
    floor = median(values.get("store_floor_us", []))
    proxy_cpu = cpu_us(runs, "miss", "proxy")
    module_cpu = cpu_us(runs, "miss", "module")
    if floor is not None and proxy_cpu and module_cpu:
        out(f"| module MISS worker CPU beyond `proxy_pass`'s ({module_cpu:.1f} - "
            f"{proxy_cpu:.1f} µs) | {module_cpu - proxy_cpu:.1f} µs | | |")
        out(f"| storing one page with the module's code alone, no nginx "
            f"(`store_floor`) | {floor:.1f} µs | | |")
        out(f"| module MISS / `proxy_pass` if storing cost the worker only that "
            f"({proxy_cpu:.1f} / ({proxy_cpu:.1f} + {floor:.1f})) "
            f"| {proxy_cpu / (proxy_cpu + floor):.2f} × | | |")
    nocomp_cpu = cpu_us(runs, "miss", "nocomp")
    if module_cpu and nocomp_cpu:
        out(f"| module MISS worker CPU, compression on / off ({module_cpu:.1f} / "
            f"{nocomp_cpu:.1f} µs) | {module_cpu / nocomp_cpu:.2f} × | | |")
    bg = [r["bg_cpu_s"] / r["seconds"] for r in runs.get(("miss", "module"), [])
          if "bg_cpu_s" in r and r["seconds"]]
    if bg:
        out(f"| module MISS runs: the worker's compressor thread, CPU "
            f"(median over the runs) | {median(bg) * 100:.0f}% of a core | | |")
    for variant, label in (("module", "module"), ("nocomp", "module, compression off,")):
        if f"{variant}_miss_stored" not in values:
            continue
        stored = sum(values[f"{variant}_miss_stored"])
        answered = sum(values[f"{variant}_miss_requests"])
        out(f"| {label} MISS runs: pages stored / responses | "
            f"{stored:,.0f} / {answered:,.0f} | all | {met(stored, answered)} |")
        if variant == "module":
            compressed = sum(values["module_miss_compressed"])
            every = sum(values["module_miss_stored_all"])
            out(f"| module MISS runs, warm-ups included: pages with their variants "
                f"when the run ended / pages stored | {compressed:,.0f} / {every:,.0f} | | |")
    if len(lines) == measures:  # no measure: no table
        del lines[-2:]
    for extra in (compress_report(compress, values), browser_report(runs, values)):
        if extra:
            if lines:
                out("")
            lines.extend(extra[:-1])
    stampede_lines = stampede_report(ways, info)
    if stampede_lines:
        if lines:
            out("")
        lines.extend(stampede_lines)
    visitor_lines = visitors_report(info)
    if visitor_lines:
        if lines:
            out("")
        lines.extend(visitor_lines)
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------
# Case 10: a day of real visitors
# --------------------------------------------------------------------------

VISITOR_SYSTEMS = (
    ("module", "this module, as `nginx-conf/django-gunicorn.conf` configures it"),
    ("pcache", "nginx `proxy_cache` tuned as guides tune it"),
    ("varnish", "Varnish with a typical VCL"),
)

# the mix's shares of old URLs (301) and missing paths (404), per request
VISITOR_STATUSES = {"301": 0.03, "404": 0.07}


def cmd_visitors(load_file, count_file, system, results):
    """Checks a measured run of case 10 and records its share of requests
    that reached the application and its requests/s; with errors or
    statuses off the mix, the exit status is 3 (ci/bench goes on, then
    fails)."""
    with open(load_file) as f:
        load = json.load(f)
    with open(count_file) as f:
        app = json.load(f)["total"]
    requests = load["requests"]
    statuses = load["http_statuses"]
    problems = []
    if requests == 0:
        problems.append("no request completed")
    if load["errors"]:
        problems.append(f"{load['errors']} errors ({load['first_error']})")
    other = {s: n for s, n in statuses.items() if s not in ("200", "301", "404")}
    if other:
        problems.append(f"statuses off the mix: {other}")
    for status, share in VISITOR_STATUSES.items():
        got = statuses.get(status, 0) / max(requests, 1)
        if not share / 2 <= got <= share * 1.5:
            problems.append(f"{got:.3f} of the responses are {status}, the mix has {share}")
    share = app / max(requests, 1)
    rps = requests / load["seconds"]
    print(
        f"    visitors   {system:<8} {rps:>8.0f} req/s  {share:.3f} reached the app"
        f" ({app} / {requests})  statuses {statuses}",
        file=sys.stderr,
    )
    if problems:
        print(f"bench: visitors/{system}: " + "; ".join(problems), file=sys.stderr)
    for name, value in (("share", share), ("rps", rps), ("requests", requests), ("app", app)):
        cmd_value(results, f"visitors_{system}_{name}", value)
    if problems:
        sys.exit(3)


def visitors_report(info):
    """Case 10's table, when it ran."""
    measured = [(s, label) for s, label in VISITOR_SYSTEMS if f"visitors_{s}_share" in info]
    if not measured:
        return []
    lines = [
        "| 10. a day of real visitors (each system starting empty) "
        "| share of requests that reach the app | requests/s |",
        "| --- | ---: | ---: |",
    ]
    for system, label in measured:
        share, rps = info[f"visitors_{system}_share"], info[f"visitors_{system}_rps"]
        lines.append(f"| {label} | {share:.3f} | {rps:,.0f} |")
    anchors = [s for s, _ in measured if s != "module"]
    if "visitors_module_share" in info and anchors:
        best_share = min(info[f"visitors_{s}_share"] for s in anchors)
        best_rps = max(info[f"visitors_{s}_rps"] for s in anchors)
        share_met = "yes" if info["visitors_module_share"] <= best_share else "**no**"
        lines.append(f"| target: module share ≤ best anchor's ({best_share:.3f}) | {share_met} | |")
        lines.append(
            f"| target: module requests/s ≥ every anchor's ({best_rps:,.0f}) | "
            f"| {met(info['visitors_module_rps'], best_rps)} |"
        )
    return lines


BEGIN = "<!-- ci/bench --write: begin -->"
END = "<!-- ci/bench --write: end -->"


def cmd_write(report_file, markdown):
    with open(report_file) as f:
        generated = f.read()
    try:
        with open(markdown) as f:
            text = f.read()
    except FileNotFoundError:
        text = f"# Benchmarks\n\n{BEGIN}\n{END}\n"
    if BEGIN not in text or END not in text:
        sys.exit(f"bench: {markdown} lacks the markers {BEGIN} / {END}")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    with open(markdown, "w") as f:
        f.write(f"{head}{BEGIN}\n{generated}{END}{tail}")


def main():
    args = sys.argv[1:]
    commands = {
        "wrk": cmd_wrk,
        "wrk-requests": cmd_wrk_requests,
        "value": cmd_value,
        "body": cmd_body,
        "variants": cmd_variants,
        "encoded": cmd_encoded,
        "tree": cmd_tree,
        "tagged-tree": cmd_tagged_tree,
        "count": cmd_count,
        "copies": cmd_copies,
        "pages": cmd_pages,
        "strace": cmd_strace,
        "memory-conf": cmd_memory_conf,
        "last": cmd_last,
        "monitor": cmd_monitor,
        "others": cmd_others,
        "stampede": cmd_stampede,
        "visitors": cmd_visitors,
        "report": lambda results: sys.stdout.write(report(results)),
        "write": cmd_write,
    }
    if not args or args[0] not in commands:
        sys.exit(__doc__)
    commands[args[0]](*args[1:])


if __name__ == "__main__":
    main()
